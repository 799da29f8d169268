"""OmegaConf: base + prod (YAML), then the environment overrides as a dotlist."""

import sys

from common import emit, env_overrides
from omegaconf import OmegaConf

d = sys.argv[1]
base = OmegaConf.load(f"{d}/base.yaml")
prod = OmegaConf.load(f"{d}/prod.yaml")
env = OmegaConf.from_dotlist([f"{s}.{k}={v}" for s, k, v in env_overrides()])
cfg = OmegaConf.merge(base, prod, env)
emit(OmegaConf.to_container(cfg))
