"""The smallest model of each family, for the one-step detection / segmentation tests."""
import pytest

SMALLEST = ("davit_tiny", "nat_mini", "dinat_mini", "gc_vit_xxtiny", "vig_h_tiny", "agent_swin_t", "agent_pvt_tiny")


def skip_unless_registered(model_name: str) -> None:
    import timm

    import visionattn  # noqa: F401  (registers our families)

    if model_name not in timm.list_models():
        pytest.skip(f"{model_name} is not registered in timm yet")
