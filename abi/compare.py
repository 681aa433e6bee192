"""The differences between a recorded ABI and the current one, each with its verdict.

A program built against the recorded ABI keeps working against the current one when
every difference is an addition: a new function, typedef, callback, constant, enum
value or struct, or a field appended to a size-versioned struct (one whose first field
`size_t size` tells the library how much of it the caller knows). Anything removed or
changed is a break: it needs a new WEFT_ABI_VERSION, and with it a new SONAME.
"""

import re
from dataclasses import dataclass
from typing import Dict, List, Optional, Tuple

BREAK, ADDITION, VERSION = "break", "addition", "version"

Records = Dict[str, str]


@dataclass
class Difference:
    verdict: str  # BREAK, ADDITION or VERSION (the ABI version or the SONAME moved)
    why: str  # when the verdict needs a reason: "inside the old 32 bytes of ..."
    key: str  # the record's key: "function weft_cancel", "struct weft_spawn_options.pool"
    old: Optional[str]  # None: added
    new: Optional[str]  # None: removed


def number(value: str, name: str) -> int:
    return int(re.search(rf"\b{name} (\d+)", value).group(1))


def size_versioned(records: Records, struct: str) -> bool:
    return records.get(f"struct {struct}", "").endswith("size-versioned")


def added_field(old: Records, new: Records, struct: str, offset: int) -> Tuple[str, str]:
    if f"struct {struct}" not in old:
        return ADDITION, f"a field of the new struct {struct}"
    if not (size_versioned(old, struct) and size_versioned(new, struct)):
        return BREAK, f"{struct} is not size-versioned: its fields and size are fixed"
    old_size = number(old[f"struct {struct}"], "size")
    if offset < old_size:
        return BREAK, (f"inside the old {old_size} bytes of {struct} (its tail padding?): a caller "
                       f"built against the old header passes size {old_size}, which claims this field")
    return ADDITION, f"appended to the size-versioned {struct}"


def verdict(old: Records, new: Records, key: str) -> Tuple[str, str]:
    """The verdict on a record that differs, and why when it is not plain."""
    kind, _, name = key.partition(" ")
    struct, dot, _ = name.partition(".")
    if key == "abi-version":
        if key in old and key in new and int(new[key]) > int(old[key]):
            return VERSION, ""
        return BREAK, "the ABI version may only grow"
    if key == "soname":
        return VERSION, ""
    if key not in new:
        return BREAK, ""
    if key not in old:
        if kind == "struct" and dot:
            return added_field(old, new, struct, number(new[key], "offset"))
        return ADDITION, ""
    if kind == "struct" and not dot and size_versioned(old, struct) and size_versioned(new, struct):
        if number(new[key], "size") > number(old[key], "size"):
            return ADDITION, "a size-versioned struct grew"
    return BREAK, ""


def compare(old: Records, new: Records) -> List[Difference]:
    """Every record that differs, breaks first, then in key order."""
    out = [Difference(*verdict(old, new, key), key, old.get(key), new.get(key))
           for key in sorted(set(old) | set(new)) if old.get(key) != new.get(key)]
    order = {BREAK: 0, ADDITION: 1, VERSION: 2}
    return sorted(out, key=lambda d: order[d.verdict])


def abi_version_moved(old: Records, new: Records) -> bool:
    """True when WEFT_ABI_VERSION grew: then any change may be recorded."""
    return verdict(old, new, "abi-version")[0] == VERSION


def describe(d: Difference) -> str:
    if d.old is None:
        what = f"added: {d.new}"
    elif d.new is None:
        what = f"removed (was: {d.old})"
    else:
        what = f"{d.old}  ->  {d.new}"
    return f"{d.verdict:<9} {d.key}: {what}" + (f"  ({d.why})" if d.why else "")
