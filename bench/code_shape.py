"""The code's shape, by an ast pass: module sizes and function lengths (issue 11's targets).

    python bench/code_shape.py [PACKAGE_DIR]   (default: batchgen/)

Prints the median, p90 and max function length, the longest functions and the largest modules.
"""

from __future__ import annotations

import ast
import statistics
import sys
from pathlib import Path


def functions(path: Path) -> list[tuple[int, str]]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            found.append((node.end_lineno - node.lineno + 1, f"{path}:{node.lineno} {node.name}"))
    return found


def main(argv: list[str]) -> int:
    root = Path(argv[0] if argv else "batchgen")
    files = sorted(root.rglob("*.py"))
    funcs = sorted((f for p in files for f in functions(p)), reverse=True)
    lengths = sorted(n for n, _ in funcs)
    modules = sorted(((len(p.read_text(encoding="utf-8").splitlines()), str(p)) for p in files), reverse=True)
    p90 = lengths[int(0.9 * (len(lengths) - 1))]
    print(f"{len(files)} modules, {len(funcs)} functions: median {statistics.median(lengths):g} lines, "
          f"p90 {p90}, max {lengths[-1]}")
    print(f"functions over 40 lines: {sum(1 for n in lengths if n > 40)}")
    print("| longest functions | lines |\n|---|---|")
    for n, name in funcs[:10]:
        print(f"| {name} | {n} |")
    print(f"modules over 400 lines: {sum(1 for n, _ in modules if n > 400)}")
    print("| largest modules | lines |\n|---|---|")
    for n, name in modules[:8]:
        print(f"| {name} | {n} |")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
