"""Model families; importing this package registers them in timm."""
from . import vig  # noqa: F401
