"""promptbox: find the object a command names, with MobileSAM proposals matched by CLIP. No ROS here."""

from __future__ import annotations

import warnings

__version__ = "0.1.0"

# timm (imported by mobile_sam) warns about its own deprecated module paths on every start.
warnings.filterwarnings("ignore", category=FutureWarning, module=r"timm\..*")
warnings.filterwarnings("ignore", message=r"Overwriting tiny_vit_.* in registry", category=UserWarning)

__all__ = ["Locator", "LocatorConfig", "Detection", "NotFound", "parse"]


def __getattr__(name: str):
    # Lazy, so `import promptbox` stays cheap for the CLI's --help and the command parser.
    if name == "Locator":
        from promptbox.locator import Locator

        return Locator
    if name == "LocatorConfig":
        from promptbox.config import LocatorConfig

        return LocatorConfig
    if name in ("Detection", "NotFound"):
        from promptbox import detection

        return getattr(detection, name)
    if name == "parse":
        from promptbox.command import parse

        return parse
    raise AttributeError(name)
