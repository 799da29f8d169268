"""pydantic-settings: a typed model, TOML and YAML sources layered, env variables by alias."""

import sys

from common import emit
from pydantic import AliasChoices, BaseModel, Field
from pydantic_settings import (
    BaseSettings,
    SettingsConfigDict,
    TomlConfigSettingsSource,
    YamlConfigSettingsSource,
)

d = sys.argv[1]


class Pool(BaseModel):
    enabled: bool = False
    size: int = 25
    max_overflow: int = 10
    timeout: float = 30
    recycle: int = 1800
    pre_ping: bool = True
    use_lifo: bool = True


class Monitoring(BaseModel):
    enabled: bool = True
    interval: int = 30


class Database(BaseModel, extra="allow"):
    echo: bool = False


class Settings(BaseSettings):
    model_config = SettingsConfigDict(extra="ignore")
    database: Database = Database()
    pool: Pool = Pool()
    monitoring: Monitoring = Monitoring()

    @classmethod
    def settings_customise_sources(
        cls, settings_cls, init_settings, env_settings, dotenv_settings, file_secret_settings
    ):
        return (
            init_settings,
            YamlConfigSettingsSource(settings_cls, f"{d}/prod.yaml"),
            TomlConfigSettingsSource(settings_cls, f"{d}/base.toml"),
        )


class Env(BaseSettings):
    pool_size: int | None = Field(None, validation_alias=AliasChoices("LETTA_PG_POOL_SIZE"))
    pre_ping: bool | None = Field(None, validation_alias=AliasChoices("LETTA_POOL_PRE_PING"))
    echo: bool | None = Field(None, validation_alias=AliasChoices("LETTA_PG_ECHO"))


s = Settings()
e = Env()
if e.pool_size is not None:
    s.pool.size = e.pool_size
if e.pre_ping is not None:
    s.pool.pre_ping = e.pre_ping
if e.echo is not None:
    s.database.echo = e.echo
emit(s.model_dump())
