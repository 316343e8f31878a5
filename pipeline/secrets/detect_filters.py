"""detect-secrets filters of ours, loaded by detect-secrets itself (by import path) for a scan.

Each gives exactly the verdict of the detect-secrets filter it stands in for, faster. Only
`detect` names this module, and only while it scans, so importing it costs nothing before.
"""

from __future__ import annotations

from detect_secrets.filters import heuristic

# Import paths as detect-secrets' settings name filters: theirs, and ours that replaces it.
STOCK_INDIRECT_REFERENCE = "detect_secrets.filters.heuristic.is_indirect_reference"
INDIRECT_REFERENCE = f"{__name__}.is_indirect_reference"


def is_indirect_reference(line: str) -> bool:
    """`secret = get_secret_key()`, `key = request.headers['apikey']`: detect-secrets'
    `is_indirect_reference`, whose regex runs only on a line that has what it must match.

    The regex needs an opening `[` or `(` (`[\\w.-]+[\\[\\(]`); a line without either cannot
    match. Searched on every line of every file, and quadratic in the line's length, it was
    ~40% of a scan's time, and most values-file and template lines have neither character.
    """
    if "(" not in line and "[" not in line:
        return False
    return heuristic.is_indirect_reference(line)
