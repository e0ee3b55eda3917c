"""Shared behaviour of the models' hyper-parameter dataclasses."""
import dataclasses


class DictConfig:
    """to_dict/from_dict for a dataclass of model sizes, so configs travel as JSON/YAML."""

    def to_dict(self):
        """Plain JSON/YAML-friendly dict (tuples become lists)."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()}

    @classmethod
    def from_dict(cls, data):
        """Inverse of ``to_dict``; unknown keys are an error, missing keys take defaults."""
        unknown = set(data) - {f.name for f in dataclasses.fields(cls)}
        if unknown:
            raise ValueError(f"unknown {cls.__name__} keys: {sorted(unknown)}")
        return cls(**data)

    @classmethod
    def coerce(cls, config=None):
        """What every model builder accepts: None (the defaults), a dict (missing keys take defaults) or an
        instance (validated)."""
        if config is None:
            config = cls()
        elif isinstance(config, dict):
            config = cls.from_dict(config)
        elif not isinstance(config, cls):
            raise TypeError(f"expected a {cls.__name__} or a dict, got {type(config).__name__}")
        if hasattr(config, "validate"):
            config.validate()
        return config
