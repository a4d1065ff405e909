from orders.models.customers import Customer, CustomerIdentity
from orders.models.inbox import PrivacyRequest, RejectedRequest, WebhookDelivery
from orders.models.orders import Order, OrderLine, OrderStatusChange, StatusMapping
from orders.models.products import Product, ProductView
from orders.models.shops import Platform, Shop

__all__ = [
    "Customer",
    "CustomerIdentity",
    "Order",
    "OrderLine",
    "OrderStatusChange",
    "Platform",
    "PrivacyRequest",
    "Product",
    "ProductView",
    "RejectedRequest",
    "Shop",
    "StatusMapping",
    "WebhookDelivery",
]
