"""a3c: Asynchronous Advantage Actor-Critic for Gymnasium, on CPUs, from a laptop to a cluster."""

__version__ = "0.1.0"

from a3c.config import Config, build_config  # noqa: E402
from a3c.errors import A3CError, ConfigError, EnvError  # noqa: E402
from a3c.trainer import A3C  # noqa: E402

__all__ = ["A3C", "A3CError", "Config", "ConfigError", "EnvError", "build_config", "__version__"]
