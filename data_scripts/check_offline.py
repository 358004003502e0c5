"""Check that a built HTML book loads nothing from the network: no script, style sheet, font, image or frame.

Links a reader may click (<a href>, e.g. a reference's arXiv page) are fine; what a page *loads* by itself is not.
Scans every .html page (tags and inline styles) and every .css file (url(...) and @import) under the folder.

    python data_scripts/check_offline.py _build/html

Prints each remote resource with the page that loads it and exits 1 if there is any.
"""
from __future__ import annotations

import argparse
import re
import sys
from html.parser import HTMLParser
from pathlib import Path

# (tag, attribute) pairs through which a page loads something by itself
LOADING_ATTRIBUTES = {("script", "src"), ("link", "href"), ("img", "src"), ("iframe", "src"), ("source", "src"),
                      ("video", "src"), ("audio", "src"), ("embed", "src"), ("object", "data"), ("input", "src")}
# <link rel=...> values that only name a page and load nothing
NON_LOADING_RELS = {"canonical", "alternate", "author", "license", "help", "search", "next", "prev", "index"}
REMOTE = re.compile(r"^\s*(https?:)?//", re.IGNORECASE)
CSS_URL = re.compile(r"""url\(\s*['"]?([^'")\s]+)|@import\s+['"]([^'"]+)""", re.IGNORECASE)


class _Loads(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.urls: list[str] = []
        self._in_style = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = {name: value or "" for name, value in attrs}
        if tag == "link" and set(values.get("rel", "").lower().split()) <= NON_LOADING_RELS and values.get("rel"):
            return
        for name, value in values.items():
            if (tag, name) in LOADING_ATTRIBUTES:
                self.urls.append(value)
            elif name == "style":
                self.urls.extend(css_urls(value))
        self._in_style = tag == "style"

    def handle_endtag(self, tag: str) -> None:
        if tag == "style":
            self._in_style = False

    def handle_data(self, data: str) -> None:
        if self._in_style:
            self.urls.extend(css_urls(data))


def css_urls(text: str) -> list[str]:
    """Every url(...) and @import target of a style sheet."""
    return [a or b for a, b in CSS_URL.findall(text)]


def remote_loads(html: str) -> list[str]:
    """The remote URLs (http, https, protocol-relative) that one HTML page loads by itself."""
    parser = _Loads()
    parser.feed(html)
    return [url for url in parser.urls if REMOTE.match(url)]


def scan(folder: Path) -> list[tuple[Path, str]]:
    """(file, remote URL) for every page and style sheet under `folder` that loads from the network."""
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder} is not a folder of built HTML (run `make html` first)")
    found = []
    for path in sorted(folder.rglob("*")):
        if path.suffix == ".html":
            found += [(path, url) for url in remote_loads(path.read_text(errors="replace"))]
        elif path.suffix == ".css":
            found += [(path, url) for url in css_urls(path.read_text(errors="replace")) if REMOTE.match(url)]
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path, nargs="?", default=Path("_build/html"))
    args = parser.parse_args(argv)
    found = scan(args.folder)
    for path, url in found:
        print(f"{path.relative_to(args.folder)}: loads {url}")
    pages = len(list(args.folder.rglob("*.html")))
    print(f"{pages} pages checked: " + (f"{len(found)} remote loads" if found else "nothing loaded from the network"))
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
