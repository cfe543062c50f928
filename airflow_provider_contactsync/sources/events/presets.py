"""Per platform, the seed's standard field mapping in the platform's own field names.

The seed maps email -> EMAIL, firstName -> FIRSTNAME, lastName -> LASTNAME, phone -> SMS and
acceptsMarketing -> the email subscription. A preset says the same for each shape's field names (as
:mod:`.shapes` flattens them: nested objects joined with ``_``), as plain data a definition overrides
key by key like any mapping:

- ``fields``: the fields the preset reads (the customer id first).
- ``mapping``: field -> Brevo attribute. The customer id goes to EXT_ID, so a customer is one contact
  even when its email changes.
- ``consent_email``: a CEL condition (see docs/sync-semantics.md): true opted in, false opted out,
  null unknown (Brevo's flag is left as it is); None when the platform's customer carries no consent.
"""

from __future__ import annotations

import copy
from typing import Any

PRESETS: dict[str, dict[str, Any]] = {
    "custom": {
        "fields": ["id", "email", "firstName", "lastName", "phone", "acceptsMarketing"],
        "mapping": {
            "id": "EXT_ID",
            "email": "EMAIL",
            "firstName": "FIRSTNAME",
            "lastName": "LASTNAME",
            "phone": "SMS",
        },
        "consent_email": "acceptsMarketing",
    },
    # Shopify's Customer resource: email_marketing_consent.state (subscribed, not_subscribed, pending,
    # unsubscribed, redacted, invalid) since API 2022-04; accepts_marketing in older versions.
    "shopify": {
        "fields": [
            "id",
            "email",
            "first_name",
            "last_name",
            "phone",
            "email_marketing_consent_state",
            "accepts_marketing",
        ],
        "mapping": {
            "id": "EXT_ID",
            "email": "EMAIL",
            "first_name": "FIRSTNAME",
            "last_name": "LASTNAME",
            "phone": "SMS",
        },
        "consent_email": (
            "email_marketing_consent_state == null ? accepts_marketing"
            ' : email_marketing_consent_state == "subscribed" ? true'
            ' : email_marketing_consent_state in ["unsubscribed", "not_subscribed"] ? false'
            " : null"
        ),
    },
    # WooCommerce's customer: the phone is only in the billing address. The core customer holds no
    # marketing consent (plugins keep it in meta_data), so the preset sets none.
    "woocommerce": {
        "fields": ["id", "email", "first_name", "last_name", "billing_phone"],
        "mapping": {
            "id": "EXT_ID",
            "email": "EMAIL",
            "first_name": "FIRSTNAME",
            "last_name": "LASTNAME",
            "billing_phone": "SMS",
        },
        "consent_email": None,
    },
}


def preset(platform: str) -> dict[str, Any]:
    """A copy of the platform's preset (callers may change it).

    :raises KeyError: no preset for this platform.
    """
    if platform not in PRESETS:
        raise KeyError(f"no preset for platform {platform!r}: expected one of {', '.join(PRESETS)}")
    return copy.deepcopy(PRESETS[platform])
