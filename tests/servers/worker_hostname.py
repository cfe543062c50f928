"""``[core] hostname_callable`` for test workers: the name in ``CONTACTSYNC_TEST_HOSTNAME``, else the machine's.

Several Celery workers on one machine would all report the machine's name; each test worker is given a
name of its own (servers.airflow_celery), so ``TaskInstance.hostname`` says which one ran a task. Standard
library only: every Airflow process that reads the option imports it.
"""

from __future__ import annotations

import os
import socket

ENV = "CONTACTSYNC_TEST_HOSTNAME"
CALLABLE = "servers.worker_hostname.hostname"


def hostname() -> str:
    return os.environ.get(ENV) or socket.getfqdn()
