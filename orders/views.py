"""The shop webhook endpoint. It checks size and signature on the raw bytes, stores the
delivery, commits and answers; nothing else happens in the request."""

from __future__ import annotations

from django.conf import settings
from django.http import HttpRequest, JsonResponse
from django.utils import timezone
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from orders.actions import receive_delivery, record_rejection
from orders.models import Shop
from orders.platforms import get_platform
from orders.platforms.base import WebhookRejected


def _read_body(request: HttpRequest, limit: int) -> bytes | None:
    """The raw body, or None when it exceeds ``limit``. Reads past Django's own upload
    limit on purpose: the cap here is ours, answered with 413."""
    try:
        declared = int(request.META.get("CONTENT_LENGTH") or 0)
    except ValueError:
        declared = 0
    if declared > limit:
        return None
    body = request.read(limit + 1)
    return None if len(body) > limit else body


@csrf_exempt
@require_POST
def shop_webhook(request: HttpRequest, protocol: str, slug: str) -> JsonResponse:
    now = timezone.now()
    module = get_platform(protocol)
    shop = Shop.objects.filter(slug=slug, is_active=True).first()
    if module is None or shop is None or shop.webhook_protocol != protocol:
        return JsonResponse({"error": f"No active shop {slug!r} receives {protocol!r} webhooks here."}, status=404)

    body = _read_body(request, settings.HERALD_WEBHOOK_MAX_BYTES)
    if body is None:
        return JsonResponse({"error": f"Body larger than {settings.HERALD_WEBHOOK_MAX_BYTES} bytes."}, status=413)

    try:
        envelope = module.admit(shop=shop, headers=request.headers, body=body, now=now)
    except WebhookRejected as rejected:
        if rejected.status == 401:
            record_rejection(
                shop=shop,
                path=request.path,
                status_code=401,
                reason=rejected.reason,
                remote_addr=request.META.get("REMOTE_ADDR"),
                headers=request.headers,
                body=body,
                now=now,
            )
        return JsonResponse({"error": rejected.reason}, status=rejected.status)
    if envelope is None:
        return JsonResponse({"ok": True, "stored": False})

    delivery_id, created = receive_delivery(shop=shop, envelope=envelope, headers=request.headers, body=body, now=now)
    return JsonResponse({"ok": True, "stored": True, "delivery": delivery_id, "duplicate": not created})
