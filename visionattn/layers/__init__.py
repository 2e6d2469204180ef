"""nn.Modules shared by the model families, thin over ``visionattn.ops``."""
from .neighborhood import NeighborhoodAttention2d  # noqa: F401
from .gla import BiGatedLinearAttention2d  # noqa: F401
from .agent import AgentAttention2d  # noqa: F401
