#!/bin/sh
# Encrypted secrets in a profile, end to end: keygen, encrypt in place, compile, explain,
# rotate the key, decrypt. Works on a copy of profiles/prod.yaml in a temporary directory
# (removed at the end); the repository is never edited. The plaintext password is printed
# once, by the explicit decrypt step at the end.
#
#   PATH="$PWD/../../.venv/bin:$PATH" sh walkthrough.sh      # needs dbprofile[crypto]
set -eu

here=$(CDPATH='' cd -- "$(dirname -- "$0")" && pwd)
if ! command -v dbprofile >/dev/null 2>&1; then
    echo "walkthrough.sh: dbprofile not found on PATH; try PATH=\"\$PWD/../../.venv/bin:\$PATH\"" >&2
    exit 2
fi
work=$(mktemp -d "${TMPDIR:-/tmp}/dbprofile-secrets.XXXXXX")
trap 'rm -rf -- "$work"' EXIT
trap 'exit 130' HUP INT TERM
cd "$work"

# Show a command, then run it (stderr joins stdout so the transcript reads in order).
run() {
    printf '\n$ %s\n' "$*"
    "$@" 2>&1
}

echo "# 1. A key, in the environment only (keep yours in a secret manager; never printed)"
printf '\n$ export LETTA_ENCRYPTION_KEY="$(dbprofile keygen)"\n'
LETTA_ENCRYPTION_KEY=$(dbprofile keygen)
export LETTA_ENCRYPTION_KEY

echo
echo "# 2. Encrypt the literal password in a copy of the profile, in place"
mkdir profiles
cp "$here/profiles/prod.yaml" profiles/prod.yaml
chmod 600 profiles/prod.yaml
run dbprofile encrypt --in-place profiles/prod.yaml database.password

echo
echo "# 3. The file keeps its comments, order and layout; only the value changed"
run cat profiles/prod.yaml
grep -v 'password:' "$here/profiles/prod.yaml" >before.txt
grep -v 'password:' profiles/prod.yaml >after.txt
cmp -s before.txt after.txt || {
    echo "walkthrough.sh: lines other than the password's changed" >&2
    exit 1
}
grep -q '^  password: "enc:v1:[0-9a-f]\{8\}:[A-Za-z0-9_-]*" # encrypted in place; rotate yearly$' \
    profiles/prod.yaml || {
    echo "walkthrough.sh: the password line lost its value or its comment" >&2
    exit 1
}
printf '(checked: every other line is byte for byte the original; the comment stayed)\n'

echo
echo "# 4. Compile: the spec holds the enc:v1: value as it is, never the password"
run dbprofile compile --no-env --profiles-dir profiles --profile prod --output build/db.json
printf '\n$ sed -n %s build/db.json\n' "'/\"password\"/,/}/p'"
sed -n '/"password"/,/}/p' build/db.json
grep -q '"encrypted": "enc:v1:' build/db.json

echo
echo "# 5. explain and the text rendering show the secret as ***, the key as a reference"
run dbprofile explain --no-env --profiles-dir profiles --profile prod database
run dbprofile compile --no-env --profiles-dir profiles --profile prod --format text

echo
echo "# 6. Rotate to a new key (all files or none, each replaced atomically)"
printf '\n$ export NEW_KEY="$(dbprofile keygen)"\n'
NEW_KEY=$(dbprofile keygen)
export NEW_KEY
run dbprofile rotate-key --new-key-env NEW_KEY profiles/prod.yaml
printf '\n$ dbprofile decrypt profiles/prod.yaml database.password    # old key: refused\n'
if dbprofile decrypt profiles/prod.yaml database.password 2>&1 >/dev/null; then
    echo "walkthrough.sh: the old key still opens the rotated value" >&2
    exit 1
fi
printf '\n$ export LETTA_ENCRYPTION_KEY="$NEW_KEY"\n'
LETTA_ENCRYPTION_KEY=$NEW_KEY

echo
echo "# 7. Decrypt to check (the only step that prints the plaintext)"
printf '\n$ dbprofile decrypt profiles/prod.yaml database.password\n'
plain=$(dbprofile decrypt profiles/prod.yaml database.password)
printf '%s\n' "$plain"

# The round trip gave back the literal the copy started with, and nothing written holds it.
grep -qF "password: \"$plain\" #" "$here/profiles/prod.yaml" || {
    echo "walkthrough.sh: the decrypted value is not the original literal" >&2
    exit 1
}
if grep -rqF -- "$plain" profiles build; then
    echo "walkthrough.sh: the plaintext was written to a file" >&2
    exit 1
fi
echo
echo "ok: encrypted, compiled, rotated and decrypted; the plaintext is in no file written"
