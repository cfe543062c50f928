"""Which task failures no retry can fix, so they fail at once and say what to change.

A definition that does not validate, a mapping the Brevo account cannot take (an attribute that
does not exist), a missing Airflow connection or an API key Brevo refuses fail the same way on
every retry: retrying them only delays the alert (three retries took seven minutes). They end the
task as failed at once (``AirflowFailException``), with the fix in the message. Everything else
(a server down, a timeout, a 5xx) keeps Airflow's retries.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from airflow_provider_contactsync.core.errors import BrevoError, ConfigurationError

CONFIGURATION_HINT = (
    "This is a configuration problem: retrying cannot fix it, so the task is not retried. Fix the definition "
    "(check it with `contactsync validate <file>`; `--check-brevo` also checks the mapping against the account), "
    "the Airflow connection or the Brevo account, then clear the task."
)


@contextlib.contextmanager
def configuration_errors_fail_at_once() -> Iterator[None]:
    """Turn failures no retry can fix into ``AirflowFailException`` (no retry), naming the fix."""
    from airflow.exceptions import AirflowNotFoundException
    from airflow.sdk.exceptions import AirflowFailException

    try:
        yield
    except ConfigurationError as exc:
        raise AirflowFailException(f"{exc}\n{CONFIGURATION_HINT}") from exc
    except AirflowNotFoundException as exc:  # a connection id the definition names does not exist
        raise AirflowFailException(f"{exc}: create that Airflow connection.\n{CONFIGURATION_HINT}") from exc
    except BrevoError as exc:
        if exc.status in (401, 403):
            raise AirflowFailException(
                f"Brevo refused the API key ({exc.status}: {exc.message}): check the password of the Brevo "
                f"connection and that the key may write contacts.\n{CONFIGURATION_HINT}"
            ) from exc
        raise
