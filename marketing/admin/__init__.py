"""The marketing room in the admin: campaigns, the send record, consent, suppression,
promo pools, tags and contact points.

- **Campaign** (``campaigns.py``): the list counts each campaign's variants, sends sent
  and blocked, conversions (subqueries in the list's one query) and revenue per currency
  (one more query per page). "New from a starter" creates a draft from
  ``marketing.starters``. The change page edits the settings and the variants (only the
  fields the channel uses), previews every variant on a real customer and order
  (``preview.py``), sends a test to a given address, activates through
  ``marketing.compliance.activate_campaign`` (errors refuse, warnings need a confirm page)
  and archives; below the form, what each variant did and the recent blocked sends
  (``stats.py``).
- **Send** (``sends.py``): the record of every decision, read-only.
- **Consent, ConsentEvent, Suppression, Tag, CustomerTag, ContactPoint** (``audience.py``).
- **PromoPool, PromoCode** (``promo.py``).

No write happens in an admin class: buttons and forms call the functions that own the
write (``activate_campaign``, ``send_test_message``, ``set_consent``, ``suppress``,
``import_suppressions_csv``, ``import_codes_csv``, ``generate_codes``, ``tag_customer``).
The preview renders through ``marketing.actions.preview_context`` and writes nothing.
"""

from __future__ import annotations

from marketing.admin import audience, campaigns, promo, sends

__all__ = ["audience", "campaigns", "promo", "sends"]
