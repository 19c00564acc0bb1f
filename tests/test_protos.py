"""The committed stubs in autoimport/v1 are what `make protos` generates from protos/."""

from __future__ import annotations

from pathlib import Path

from grpc_tools import protoc

ROOT = Path(__file__).resolve().parent.parent


def test_committed_stubs_match_the_protos(tmp_path: Path):
    protos = sorted(str(p.relative_to(ROOT / "protos")) for p in (ROOT / "protos").rglob("*.proto"))
    include = str(Path(protoc.__file__).parent / "_proto")

    status = protoc.main(
        [
            "protoc",
            f"-I{ROOT / 'protos'}",
            f"-I{include}",
            f"--python_out={tmp_path}",
            f"--pyi_out={tmp_path}",
            f"--grpc_python_out={tmp_path}",
            *protos,
        ]
    )

    assert status == 0
    generated = {
        p.relative_to(tmp_path): p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()
    }
    committed = {path: (ROOT / path).read_bytes() for path in generated if (ROOT / path).exists()}
    stale = sorted(
        str(path) for path, content in generated.items() if committed.get(path) != content
    )
    assert not stale, f"stubs out of date: run `make protos` and commit ({', '.join(stale)})"
