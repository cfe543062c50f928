"""The sandbox org's objects (Contact, Lead, Account) and their fields, as describe reports them.

One typed table drives everything else: the SQLite columns, SOQL field checks, write validation and
the ``describe`` answer. Fields follow a standard Developer Edition org (labels, lengths, which are
createable/updateable), plus the custom fields contactsync tests need: ``Newsletter__c`` (checkbox),
``Segment__c`` (restricted picklist), a number field and one formula field per object.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

TYPES = ("id", "string", "email", "phone", "date", "datetime", "boolean", "picklist", "textarea", "reference", "double")
TEXT_TYPES = frozenset({"string", "email", "phone", "picklist", "textarea"})
ID_TYPES = frozenset({"id", "reference"})

_SOAP_TYPES = {
    "id": "tns:ID",
    "reference": "tns:ID",
    "boolean": "xsd:boolean",
    "date": "xsd:date",
    "datetime": "xsd:dateTime",
    "double": "xsd:double",
}


@dataclass(frozen=True)
class Field:
    """One field of an object, with what describe says about it."""

    name: str
    label: str
    type: str
    length: int = 0
    nillable: bool = True
    createable: bool = True
    updateable: bool = True
    formula: str | None = None
    """Set for formula fields (``calculated`` true, never writable)."""
    custom: bool = False
    picklist: tuple[str, ...] = ()
    default: Any = None
    """Value given on create when the field is absent (``defaultedOnCreate``)."""
    reference_to: tuple[str, ...] = ()
    relationship_name: str | None = None
    precision: int = 0
    scale: int = 0
    unique: bool = False

    @property
    def calculated(self) -> bool:
        return self.formula is not None

    @property
    def required(self) -> bool:
        """What a create must give: not nillable, createable and without a default."""
        return not self.nillable and self.createable and self.default is None

    @property
    def text(self) -> bool:
        return self.type in TEXT_TYPES

    def describe(self) -> dict[str, Any]:
        byte_length = self.length * 3 if self.text or self.type in ID_TYPES else 0
        return {
            "aggregatable": self.type not in ("textarea",),
            "autoNumber": False,
            "byteLength": byte_length,
            "calculated": self.calculated,
            "calculatedFormula": self.formula,
            "cascadeDelete": False,
            "caseSensitive": False,
            "createable": self.createable,
            "custom": self.custom,
            "defaultValue": self.default if self.type == "boolean" else None,
            "defaultValueFormula": None,
            "defaultedOnCreate": self.default is not None or self.name in _SYSTEM_DEFAULTED,
            "dependentPicklist": False,
            "digits": 0,
            "externalId": False,
            "filterable": self.type != "textarea",
            "groupable": self.type not in ("textarea", "double", "datetime"),
            "htmlFormatted": False,
            "idLookup": self.name in ("Id", "Email") or self.unique,
            "label": self.label,
            "length": self.length,
            "name": self.name,
            "nameField": self.name == "Name",
            "nillable": self.nillable,
            "permissionable": self.nillable and self.createable and self.name not in ("Id",),
            "picklistValues": [
                {"active": True, "defaultValue": v == self.default, "label": v, "validFor": None, "value": v}
                for v in self.picklist
            ],
            "precision": self.precision,
            "referenceTo": list(self.reference_to),
            "relationshipName": self.relationship_name,
            "restrictedPicklist": bool(self.picklist),
            "scale": self.scale,
            "soapType": _SOAP_TYPES.get(self.type, "xsd:string"),
            "sortable": self.type != "textarea",
            "type": self.type,
            "unique": self.unique,
            "updateable": self.updateable,
        }


_SYSTEM_DEFAULTED = frozenset({"Id", "OwnerId", "CreatedDate", "CreatedById", "LastModifiedDate", "LastModifiedById"})


def _system(label: str) -> tuple[Field, ...]:
    """Fields every object has, maintained by the server."""
    return (
        Field("Id", f"{label} ID", "id", 18, nillable=False, createable=False, updateable=False),
        Field("IsDeleted", "Deleted", "boolean", nillable=False, createable=False, updateable=False, default=False),
    )


_AUDIT = (
    Field("OwnerId", "Owner ID", "reference", 18, nillable=False, reference_to=("User",), relationship_name="Owner"),
    Field("CreatedDate", "Created Date", "datetime", nillable=False, createable=False, updateable=False),
    Field(
        "CreatedById",
        "Created By ID",
        "reference",
        18,
        nillable=False,
        createable=False,
        updateable=False,
        reference_to=("User",),
        relationship_name="CreatedBy",
    ),
    Field("LastModifiedDate", "Last Modified Date", "datetime", nillable=False, createable=False, updateable=False),
    Field(
        "LastModifiedById",
        "Last Modified By ID",
        "reference",
        18,
        nillable=False,
        createable=False,
        updateable=False,
        reference_to=("User",),
        relationship_name="LastModifiedBy",
    ),
    Field("SystemModstamp", "System Modstamp", "datetime", nillable=False, createable=False, updateable=False),
)

SEGMENTS = ("Prospect", "Customer", "VIP", "Churned")
LEAD_STATUSES = ("Open - Not Contacted", "Working - Contacted", "Closed - Converted", "Closed - Not Converted")
FULL_NAME_FORMULA = 'LastName & IF(ISBLANK(FirstName), "", ", " & FirstName)'


def _person(kind: str) -> tuple[Field, ...]:
    """The person fields Contact and Lead share (labels as in a standard org)."""
    return (
        Field("LastName", "Last Name", "string", 80, nillable=False),
        Field("FirstName", "First Name", "string", 40),
        Field("Name", "Full Name", "string", 121, nillable=False, createable=False, updateable=False),
        Field("Title", "Title", "string", 128),
        Field("Email", "Email", "email", 80),
        Field("Phone", "Business Phone" if kind == "Contact" else "Phone", "phone", 40),
        Field("MobilePhone", "Mobile Phone", "phone", 40),
        Field("HasOptedOutOfEmail", "Email Opt Out", "boolean", nillable=False, default=False),
        Field("HasOptedOutOfFax", "Fax Opt Out", "boolean", nillable=False, default=False),
        Field("DoNotCall", "Do Not Call", "boolean", nillable=False, default=False),
        Field("Description", f"{kind} Description" if kind == "Contact" else "Description", "textarea", 32000),
    )


def _custom() -> tuple[Field, ...]:
    return (
        Field("Newsletter__c", "Newsletter", "boolean", nillable=False, custom=True, default=False),
        Field("Segment__c", "Segment", "picklist", 255, custom=True, picklist=SEGMENTS),
        Field(
            "Full_Name_Formula__c",
            "Full Name (Formula)",
            "string",
            1300,
            createable=False,
            updateable=False,
            formula=FULL_NAME_FORMULA,
            custom=True,
        ),
    )


@dataclass(frozen=True)
class SObject:
    """An object of the org: name, key prefix (the first three characters of its ids) and fields."""

    name: str
    label: str
    label_plural: str
    key_prefix: str
    fields: tuple[Field, ...]
    by_lower: Mapping[str, Field] = field(init=False, repr=False, compare=False)
    person: bool = False
    """Name is computed from FirstName and LastName (Contact, Lead); else Name is written directly."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "by_lower", {f.name.lower(): f for f in self.fields})

    def field(self, name: str) -> Field | None:
        """The field named ``name``, case-insensitively as SOQL and the REST API read names."""
        return self.by_lower.get(name.lower())

    @property
    def table(self) -> str:
        return f"sobject_{self.name}"

    def describe(self, version: str) -> dict[str, Any]:
        base = f"/services/data/v{version}/sobjects/{self.name}"
        return {
            **self.summary(version),
            "actionOverrides": [],
            "childRelationships": [],
            "compactLayoutable": True,
            "fields": [f.describe() for f in self.fields],
            "lookupLayoutable": True,
            "namedLayoutInfos": [],
            "networkScopeFieldName": None,
            "recordTypeInfos": [],
            "searchLayoutable": True,
            "supportedScopes": [{"label": "All " + self.label_plural.lower(), "name": "everything"}],
            "urls": {
                "compactLayouts": f"{base}/describe/compactLayouts",
                "rowTemplate": f"{base}/{{ID}}",
                "describe": f"{base}/describe",
                "sobject": base,
            },
        }

    def summary(self, version: str) -> dict[str, Any]:
        """The object's entry in the global describe (``GET sobjects``)."""
        base = f"/services/data/v{version}/sobjects/{self.name}"
        return {
            "activateable": False,
            "createable": True,
            "custom": False,
            "customSetting": False,
            "deletable": True,
            "deprecatedAndHidden": False,
            "feedEnabled": False,
            "hasSubtypes": False,
            "isSubtype": False,
            "keyPrefix": self.key_prefix,
            "label": self.label,
            "labelPlural": self.label_plural,
            "layoutable": True,
            "mergeable": self.person,
            "mruEnabled": True,
            "name": self.name,
            "queryable": True,
            "replicateable": True,
            "retrieveable": True,
            "searchable": True,
            "triggerable": True,
            "undeletable": True,
            "updateable": True,
            "urls": {"rowTemplate": f"{base}/{{ID}}", "describe": f"{base}/describe", "sobject": base},
        }


CONTACT = SObject(
    "Contact",
    "Contact",
    "Contacts",
    "003",
    (
        *_system("Contact"),
        Field("AccountId", "Account ID", "reference", 18, reference_to=("Account",), relationship_name="Account"),
        *_person("Contact"),
        Field("Birthdate", "Birthdate", "date"),
        *_AUDIT,
        *_custom(),
        Field("Lifetime_Value__c", "Lifetime Value", "double", custom=True, precision=18, scale=2),
    ),
    person=True,
)

LEAD = SObject(
    "Lead",
    "Lead",
    "Leads",
    "00Q",
    (
        *_system("Lead"),
        *_person("Lead"),
        Field("Company", "Company", "string", 255, nillable=False),
        Field(
            "Status", "Lead Status", "picklist", 40, nillable=False, picklist=LEAD_STATUSES, default=LEAD_STATUSES[0]
        ),
        *_AUDIT,
        *_custom(),
        Field("Score__c", "Score", "double", custom=True, precision=5, scale=0),
    ),
    person=True,
)

ACCOUNT = SObject(
    "Account",
    "Account",
    "Accounts",
    "001",
    (*_system("Account"), Field("Name", "Account Name", "string", 255, nillable=False), *_AUDIT),
)

OBJECTS: dict[str, SObject] = {o.name.lower(): o for o in (CONTACT, LEAD, ACCOUNT)}
"""By lower-case name: object names are case-insensitive in SOQL and REST paths."""

BY_PREFIX: dict[str, SObject] = {o.key_prefix: o for o in OBJECTS.values()}


def sobject(name: str) -> SObject | None:
    return OBJECTS.get(name.lower())


# --- ids ---------------------------------------------------------------------------------------------

BASE62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
_SUFFIX = "ABCDEFGHIJKLMNOPQRSTUVWXYZ012345"
POD = "8d0"
"""Characters 4-6 of every id the sandbox makes (an instance's pod and a reserved character)."""


def checksum(id15: str) -> str:
    """The three characters Salesforce appends to a case-sensitive 15-character id."""
    out = ""
    for chunk in range(3):
        bits = sum(1 << i for i, c in enumerate(id15[chunk * 5 : chunk * 5 + 5]) if "A" <= c <= "Z")
        out += _SUFFIX[bits]
    return out


def make_id(prefix: str, number: int) -> str:
    """The 18-character id of the ``number``-th record with key ``prefix`` (ordered like ``number``)."""
    digits = ""
    while number:
        number, rest = divmod(number, 62)
        digits = BASE62[rest] + digits
    id15 = prefix + POD + digits.rjust(9, "0")
    return id15 + checksum(id15)


def normalize_id(value: str) -> str | None:
    """The 18-character form of a 15- or 18-character id, or None when ``value`` is not an id."""
    if not isinstance(value, str) or len(value) not in (15, 18) or any(c not in BASE62 for c in value):
        return None
    if len(value) == 15:
        return value + checksum(value)
    if value[15:].upper() != checksum(value[:15]):
        return None
    return value[:15] + checksum(value[:15])
