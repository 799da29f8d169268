// Starts `dbprofile lsp` for profile files (profiles/*.toml|yaml|yml). See docs/editors.md.
const vscode = require("vscode");
const { LanguageClient } = require("vscode-languageclient/node");

let client;

function activate(context) {
  const [command, ...args] = vscode.workspace
    .getConfiguration("dbprofile")
    .get("command", ["dbprofile", "lsp"]);
  const cwd = vscode.workspace.workspaceFolders?.[0]?.uri.fsPath;
  client = new LanguageClient(
    "dbprofile",
    "dbprofile",
    { command, args, options: { cwd } },
    {
      documentSelector: ["toml", "yaml"].map((language) => ({
        scheme: "file",
        language,
        pattern: "**/profiles/*.{toml,yaml,yml}",
      })),
    },
  );
  context.subscriptions.push(client);
  return client.start();
}

function deactivate() {
  return client ? client.stop() : undefined;
}

module.exports = { activate, deactivate };
