"""What a load does beyond upserting, from the definition and the run's params (docs/sync-semantics.md)."""

from __future__ import annotations

from dataclasses import dataclass

from airflow_provider_contactsync.core.spec import Deletes, SourceDefinition


@dataclass(frozen=True, slots=True)
class SyncSettings:
    """The sync semantics of one load.

    :param mode: ``upsert``, ``create_only``, ``update_only`` or ``mirror``.
    :param unlink_list_ids: lists every sent contact is removed from.
    :param deletes: the delete rules in force (None: the source detects no deletes).
    :param intents: items may carry an intent (conditional lists, consent, soft delete).
    :param resubscribe: ``explicit_only`` or ``never``.
    :param allow_mass_delete: the run's param: go past ``deletes.max_per_run``.
    :param dry_run: the run's param: plan and report, send nothing.
    :param full_read: this run read the whole source (what mirror mode needs to tell what is gone).
    """

    mode: str = "upsert"
    unlink_list_ids: tuple[int, ...] = ()
    deletes: Deletes | None = None
    intents: bool = False
    resubscribe: str = "explicit_only"
    allow_mass_delete: bool = False
    dry_run: bool = False
    full_read: bool = True

    @classmethod
    def of(
        cls,
        definition: SourceDefinition,
        *,
        allow_mass_delete: bool = False,
        dry_run: bool = False,
        full_read: bool = True,
    ) -> SyncSettings:
        destination = definition.destination
        return cls(
            mode=destination.mode,
            unlink_list_ids=tuple(destination.unlink_list_ids),
            deletes=definition.deletes_or_default,
            intents=bool(destination.lists or definition.consent or definition.source.deleted_when),
            resubscribe=definition.consent.resubscribe if definition.consent else "never",
            allow_mass_delete=allow_mass_delete,
            dry_run=dry_run,
            full_read=full_read,
        )

    @property
    def mirror(self) -> bool:
        return self.mode == "mirror"

    @property
    def imports(self) -> bool:
        """Contacts go through ``POST /contacts/import`` (every mode but update_only)."""
        return self.mode != "update_only"
