"""YAML loading with limits, for specs and --set values a hostile or careless user may write.

`yaml.safe_load` refuses python tags but not: a "billion laughs" file (a few aliases of aliases
expand to gigabytes once pydantic copies the tree), 500 nested brackets (RecursionError in the
composer), duplicate keys (the last silently wins), binary or non-UTF-8 bytes (UnicodeDecodeError),
keys YAML 1.1 reads as booleans (an ablation arm `on:` became True: here it stays the name "on").
`load_text` / `read_file` refuse each of these with a SpecError naming the file (or --set value),
the line, and the fix (YamlLimitError for the limits). Every reader of YAML, specs and an
experiment's saved files alike (lico_run.yaml, trial_spec.yaml), goes through here. Never imports the spec models, so any layer may use it.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from yaml.composer import Composer
from yaml.constructor import SafeConstructor
from yaml.nodes import MappingNode, Node, ScalarNode

from ..errors import SpecError
from ..storage.safe_files import UnsafeFile, read_bytes

MAX_BYTES = 1_000_000       # a spec is a few KB; a MB is far beyond any real one
MAX_DEPTH = 32              # sections nest 4 deep (base.lico.mm.temperature); lists a few more
MAX_NODES = 100_000         # nodes after alias expansion (a billion-laughs file has 10^9)


_BOOL, _STR = "tag:yaml.org,2002:bool", "tag:yaml.org,2002:str"


class YamlLimitError(SpecError):
    """A YAML file beyond the size, depth or alias limits: hostile or not a spec, never just damaged."""


class _LimitedLoader(yaml.SafeLoader):
    """SafeLoader that counts nesting depth while composing and refuses duplicate keys."""

    def __init__(self, stream, source: str):
        super().__init__(stream)
        self._source, self._depth = source, 0

    def compose_node(self, parent, index):
        self._depth += 1
        if self._depth > MAX_DEPTH:
            mark = self.peek_event().start_mark
            raise YamlLimitError(f"{self._source}: nested more than {MAX_DEPTH} levels deep (line {mark.line + 1}). "
                            f"A spec nests a few levels (base.lico.mm.temperature); flatten the file.")
        try:
            return Composer.compose_node(self, parent, index)
        finally:
            self._depth -= 1

    def construct_mapping(self, node, deep=False):
        if isinstance(node, MappingNode):
            seen: dict[Any, int] = {}
            for key_node, _ in node.value:
                if isinstance(key_node, ScalarNode):
                    if key_node.tag == _BOOL:      # YAML 1.1 reads the key `on:` (yes, off...) as True: every key
                        key_node.tag = _STR        # of a spec is a name (an arm `on`), so it stays the text written
                    key = key_node.value
                    line = key_node.start_mark.line + 1
                    if key in seen:
                        raise SpecError(f"{self._source}: duplicate key '{key}' (lines {seen[key]} and {line}); "
                                        f"YAML would silently keep the last one. Keep one of them.")
                    seen[key] = line
        return SafeConstructor.construct_mapping(self, node, deep=deep)


def _expanded_size(root: Node, source: str) -> int:
    """Nodes the tree has once every alias is expanded (memoised per node: linear in the file)."""
    sizes: dict[int, int] = {}
    active: set[int] = set()

    def size(node: Node) -> int:
        key = id(node)
        if key in sizes:
            return sizes[key]
        if key in active:
            raise YamlLimitError(f"{source}: an alias refers to its own anchor (a recursive structure); "
                            f"a spec is a tree: write the values out.")
        active.add(key)
        if isinstance(node, MappingNode):
            n = 1 + sum(size(k) + size(v) for k, v in node.value)
        elif isinstance(node.value, list):
            n = 1 + sum(size(c) for c in node.value)
        else:
            n = 1
        active.discard(key)
        sizes[key] = n = min(n, MAX_NODES + 1)      # capped: the sum cannot overflow into bignums
        return n

    return size(root)


def load_text(text: str, source: str) -> Any:
    """Parse one YAML document with the limits above. Raises SpecError naming `source`."""
    if len(text) > MAX_BYTES:
        raise YamlLimitError(f"{source}: {len(text)} characters, more than the {MAX_BYTES} a spec may have; pass a spec file.")
    if "\x00" in text:
        raise SpecError(f"{source}: holds NUL bytes, so it is a binary file, not a YAML spec; pass the YAML spec file.")
    loader = None
    try:
        loader = _LimitedLoader(text, source)         # its reader refuses control characters here
        node = loader.get_single_node()
        if node is None:
            return None
        if _expanded_size(node, source) > MAX_NODES:
            raise YamlLimitError(f"{source}: its aliases (*name) expand to more than {MAX_NODES} values "
                            f"(a 'billion laughs' file?); write the values out or use fewer aliases.")
        return loader.construct_document(node)
    except yaml.YAMLError as exc:
        detail = " ".join(str(exc).split())
        raise SpecError(f"{source}: not valid YAML ({detail}). Fix the syntax at the line named; "
                        f"python tags (!!python/...) are never accepted.") from None
    except RecursionError:
        raise YamlLimitError(f"{source}: nested too deeply; flatten the file.") from None
    finally:
        if loader is not None:
            loader.dispose()


def read_file(path: str | Path) -> Any:
    """Read a YAML file as UTF-8 text with the limits above; SpecError when it is not one."""
    path = Path(path)
    try:
        size = path.stat().st_size
        if size > MAX_BYTES:
            raise YamlLimitError(f"{path}: {size} bytes, more than the {MAX_BYTES} a spec may have; "
                            f"is it the right file? Pass the YAML spec.")
        raw = read_bytes(str(path), limit=MAX_BYTES)      # a FIFO or device is refused, never read
    except UnsafeFile as exc:
        raise SpecError(f"{exc} Pass the YAML spec file.") from None
    except OSError as exc:
        raise SpecError(f"{path}: cannot be read ({exc.strerror}). Pass a readable YAML spec file.") from None
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise SpecError(f"{path}: not UTF-8 text (byte {exc.start} is 0x{raw[exc.start]:02x}); a spec is a "
                        f"UTF-8 YAML file. Is it a binary file, or saved in another encoding (re-save as UTF-8)?") from None
    return load_text(text, str(path))
