"""The code blocks of docs/extending.md that the tests run, each marked by the comment line above it:
``<!-- file: PATH -->`` (the whole file PATH), ``<!-- part of: PATH -->`` (a YAML excerpt of PATH) or
``<!-- add to: PATH -->`` (code the guide adds to PATH of the plugin or its tests)."""
import re
from typing import List, NamedTuple

from conftest import REPO_ROOT

GUIDE = REPO_ROOT / 'docs' / 'extending.md'
BLOCK = re.compile(r'^<!-- (file|part of|add to): (\S+) -->\n\n```(\w+)\n(.*?)^```$', flags=re.S | re.M)


class Block(NamedTuple):
    kind: str
    path: str
    language: str
    code: str


def guide_blocks(kind: str) -> List[Block]:
    """The guide's blocks of one kind, in the guide's order."""
    return [Block(*match.groups()) for match in BLOCK.finditer(GUIDE.read_text()) if match.group(1) == kind]
