"""Model families; importing this package registers them in timm."""
from . import vig  # noqa: F401
from . import nat  # noqa: F401
from . import gc_vit  # noqa: F401
from . import sgformer  # noqa: F401
from . import stvit  # noqa: F401
from . import agent_swin  # noqa: F401
from . import agent_pvt  # noqa: F401
from . import agent_deit  # noqa: F401
from . import agent_cswin  # noqa: F401
