from marketing.models.audience import Consent, ConsentEvent, ContactPoint, CustomerTag, Suppression, Tag
from marketing.models.campaigns import Campaign, CampaignVariant
from marketing.models.insights import Conversion, ProductCoOccurrence, ProductPopularity
from marketing.models.promo import PromoCode, PromoPool
from marketing.models.sends import Send

__all__ = [
    "Campaign",
    "CampaignVariant",
    "Consent",
    "ContactPoint",
    "ConsentEvent",
    "Conversion",
    "CustomerTag",
    "ProductCoOccurrence",
    "ProductPopularity",
    "PromoCode",
    "PromoPool",
    "Send",
    "Suppression",
    "Tag",
]
