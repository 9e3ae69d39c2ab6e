"""Run the `aft` CLI as if some packages were not installed (a plain ``pip install aft``).

``python _blocked.py MOD1,MOD2 -- ARGS...`` puts a meta-path finder first that raises
``ModuleNotFoundError`` for those top-level modules (and their submodules), then runs
``aft ARGS...``. This tests aft's own behaviour when an optional dependency is absent.
"""

from __future__ import annotations

import sys


class _Blocker:
    def __init__(self, names: set[str]) -> None:
        self.names = names

    def find_spec(self, fullname, path=None, target=None):  # noqa: ANN001 - the finder protocol
        if fullname.split(".")[0] in self.names:
            raise ModuleNotFoundError(f"No module named {fullname!r}", name=fullname)
        return None


if __name__ == "__main__":
    blocked, sep, *argv = sys.argv[1:]
    assert sep == "--"
    names = {n for n in blocked.split(",") if n}
    for mod in list(sys.modules):
        if mod.split(".")[0] in names:
            del sys.modules[mod]
    sys.meta_path.insert(0, _Blocker(names))
    from aft.cli.main import main

    raise SystemExit(main(argv))
