"""data_scripts/check_offline.py finds what a built page loads from the network, and only that."""
from tests.data_scripts.layouts import load_script

check = load_script("check_offline")

PAGE = """<html><head>
<link rel="stylesheet" href="_static/theme.css"><link rel="stylesheet" href="https://cdn.example.org/fa.css">
<link rel="canonical" href="https://book.example.org/intro.html">
<script src="_static/mathjax/tex-chtml.js"></script><script src="//cdn.example.org/require.js"></script>
<style>@font-face { src: url('https://fonts.example.org/a.woff2'); } .x { background: url(img/local.png); }</style>
</head><body><a href="https://arxiv.org/abs/2007.06600">the paper</a><img src="_images/fig.png">
<img src="http://example.org/remote.png"><div style="background-image: url(https://example.org/bg.png)"></div>
</body></html>"""


def test_remote_loads_lists_scripts_styles_fonts_and_images_but_not_links():
    assert check.remote_loads(PAGE) == ["https://cdn.example.org/fa.css", "//cdn.example.org/require.js",
                                        "https://fonts.example.org/a.woff2", "http://example.org/remote.png",
                                        "https://example.org/bg.png"]
    assert check.remote_loads('<a href="https://doi.org/10.1/x">ref</a><script src="a.js"></script>') == []


def test_scan_reads_pages_and_style_sheets_and_main_exits_1(tmp_path, capsys):
    (tmp_path / "_static").mkdir()
    (tmp_path / "index.html").write_text('<script src="_static/a.js"></script>')
    (tmp_path / "_static" / "a.css").write_text('@import "https://fonts.example.org/css"; .y { src: url(f.woff) }')
    assert check.scan(tmp_path) == [(tmp_path / "_static" / "a.css", "https://fonts.example.org/css")]
    assert check.main([str(tmp_path)]) == 1
    assert "_static/a.css: loads https://fonts.example.org/css" in capsys.readouterr().out
    (tmp_path / "_static" / "a.css").write_text(".y { src: url(f.woff) }")
    assert check.main([str(tmp_path)]) == 0
    assert "nothing loaded from the network" in capsys.readouterr().out
