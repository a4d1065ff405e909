"""The webhook protocols we speak, listed explicitly (no import-time self-registration)."""

from __future__ import annotations

from importlib import import_module
from typing import cast

from orders.platforms.base import PlatformModule

PLATFORM_MODULES: dict[str, str] = {
    "shopify": "orders.platforms.shopify",
    "woocommerce": "orders.platforms.woocommerce",
    "bigcommerce": "orders.platforms.bigcommerce",
    "magento": "orders.platforms.generic",
    "generic": "orders.platforms.generic",
}


def get_platform(protocol: str) -> PlatformModule | None:
    path = PLATFORM_MODULES.get(protocol)
    if path is None:
        return None
    return cast(PlatformModule, import_module(path))
