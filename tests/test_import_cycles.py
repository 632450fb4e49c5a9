"""No two cnnlab modules import each other, directly or through others: each module's
dependencies can be read, tested and moved without the ones that depend on it."""

from __future__ import annotations

import grimp


def test_no_module_imports_one_that_imports_it_back() -> None:
    # A name imported for annotations alone (under ``TYPE_CHECKING``) is never imported when
    # cnnlab runs: ``sizing`` takes a ``RunConfig`` that ``config`` builds with its rules.
    graph = grimp.build_graph("cnnlab", exclude_type_checking_imports=True)
    cycles = sorted(
        (module, imported)
        for module in graph.modules
        for imported in graph.find_modules_directly_imported_by(module)
        if graph.chain_exists(importer=imported, imported=module)
    )
    assert cycles == []
