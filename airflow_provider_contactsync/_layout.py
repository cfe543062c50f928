"""Where ``dag_factory`` and ``example_dags`` come from: the repository's top level (docs/adr/0009).

The repository keeps them at its top level, beside the package (the design card's layout); the
wheel maps both into the package (``[tool.hatch.build.targets.wheel.force-include]``), so an
installed provider imports ``airflow_provider_contactsync.dag_factory`` and ships
``airflow_provider_contactsync/example_dags/`` as any package module. Running from a checkout (an
editable install, the tests, the demo), nothing is mapped: this finder answers for exactly those
two names, from the top-level folders, and for nothing else.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import importlib.util
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

PACKAGE = "airflow_provider_contactsync"
TOP_LEVEL = ("dag_factory", "example_dags")


class TopLevelFolders(importlib.abc.MetaPathFinder):
    """Finds ``airflow_provider_contactsync.<folder>`` in ``<root>/<folder>/`` (submodules follow its path)."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def find_spec(self, fullname: str, path: Any = None, target: ModuleType | None = None) -> Any:
        package, _, name = fullname.rpartition(".")
        if package != PACKAGE or name not in TOP_LEVEL:
            return None
        folder = self.root / name
        init = folder / "__init__.py"
        if not init.is_file():
            return None
        return importlib.util.spec_from_file_location(fullname, init, submodule_search_locations=[str(folder)])


def install(package_dir: Path) -> None:
    """From a checkout (the folders are not inside the package), let the package import them."""
    if all((package_dir / name).exists() for name in TOP_LEVEL):
        return  # an installed wheel: they were mapped in
    root = package_dir.parent
    if not any((root / name / "__init__.py").is_file() for name in TOP_LEVEL):
        return
    if not any(isinstance(finder, TopLevelFolders) for finder in sys.meta_path):
        sys.meta_path.append(TopLevelFolders(root))


def example_dags_dir() -> Path:
    """The example DAGs folder, in a checkout or in an installed wheel alike."""
    import airflow_provider_contactsync.example_dags as examples

    return Path(examples.__file__).resolve().parent
