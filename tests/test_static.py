"""Static files: path resolution against traversal, the file cache, security headers."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from pichat.static import DEFAULT_TYPE, FileCache, resolve, security_headers

SECRET = b"root:x:0:0:secret\n"


@pytest.fixture
def root(tmp_path: Path) -> Path:
    """A document root next to an ``outside`` directory holding a secret, with traps inside.

    The outside files really exist, so a resolve() that let a traversal through would
    return a path instead of None.
    """
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.txt").write_bytes(SECRET)
    (outside / "index.html").write_text("outside index")
    docroot = tmp_path / "root"
    (docroot / "js").mkdir(parents=True)
    (docroot / "index.html").write_text("<!doctype html>")
    (docroot / "js" / "app.js").write_text("export {};")
    (docroot / "sp ace.txt").write_text("space")
    (docroot / "sub").mkdir()
    (docroot / "sub" / "index.html").write_text("sub index")
    (docroot / "noindex").mkdir()
    (docroot / "noindex" / "a.txt").write_text("a")
    (docroot / ".git").mkdir()
    (docroot / ".git" / "config").write_text("[core]")
    (docroot / ".env").write_text("SECRET=1")
    (docroot / "js" / ".hidden.js").write_text("hidden")
    (docroot / "out").symlink_to(outside / "secret.txt")
    (docroot / "outdir").symlink_to(outside)
    (docroot / "inlink").symlink_to(docroot / "js" / "app.js")
    (docroot / "indir").symlink_to(docroot / "js")
    (docroot / "trap").mkdir()
    (docroot / "trap" / "index.html").symlink_to(outside / "secret.txt")
    (docroot / "loop").symlink_to(docroot / "loop")
    (docroot / "dangling").symlink_to(docroot / "missing")
    os.mkfifo(docroot / "fifo")
    return docroot.resolve()


TRAVERSALS = [
    "/..",
    "/../",
    "/../outside/secret.txt",
    "/js/../../outside/secret.txt",
    "/%2e%2e/outside/secret.txt",
    "/%2E%2E/outside/secret.txt",
    "/%2e%2e%2foutside%2fsecret.txt",
    "/..%2foutside%2fsecret.txt",
    "/.%2e/outside/secret.txt",
    "/js/%2e%2e/%2e%2e/outside/secret.txt",
    "/%252e%252e/outside/secret.txt",
    "/%252e%252e%252foutside%252fsecret.txt",
    "/..\\outside\\secret.txt",
    "/js\\..\\..\\outside\\secret.txt",
    "/%5c..%5coutside%5csecret.txt",
    "/..%5coutside%5csecret.txt",
    "/index.html%00",
    "/index.html%00.png",
    "/%00",
    "/etc/passwd",
    "//etc/passwd",
    "///etc/passwd",
    "/.git/config",
    "/.git/",
    "/.git",
    "/%2egit/config",
    "/.env",
    "/%2eenv",
    "/js/.hidden.js",
    "/./index.html",
    "/out",
    "/outdir/secret.txt",
    "/outdir/",
    "/outdir",
    "/trap/",
    "/%ff",
    "/index.html%ff",
    "/%c0%ae%c0%ae/outside/secret.txt",
    "/noindex/",
    "/noindex",
    "/missing.html",
    "/fifo",
    "/loop",
    "/dangling",
]


@pytest.mark.parametrize("url_path", TRAVERSALS)
def test_traversal_and_hidden_paths_are_refused(root: Path, url_path: str) -> None:
    """Traversal, encoded dots or slashes, NUL, dotfiles, escaping links, specials: None."""
    assert resolve(root, url_path) is None


def test_backslash_is_refused_even_when_such_a_file_exists(root: Path) -> None:
    """A decoded backslash is refused outright, even where it is an ordinary name character."""
    (root / "back\\slash.txt").write_text("x")
    assert resolve(root, "/back%5cslash.txt") is None
    assert resolve(root, "/back\\slash.txt") is None


def test_absolute_path_of_outside_file_is_refused(root: Path) -> None:
    """A URL path spelling the absolute file system path of an outside file gives None."""
    secret = root.parent / "outside" / "secret.txt"
    assert resolve(root, str(secret)) is None
    assert resolve(root, "/" + str(secret)) is None


def test_every_outside_target_exists(root: Path) -> None:
    """The fixture's outside files exist, so the traversal cases above are real attempts."""
    assert (root / ".." / "outside" / "secret.txt").read_bytes() == SECRET
    assert (root / "out").read_bytes() == SECRET
    assert (root / "outdir" / "secret.txt").read_bytes() == SECRET
    assert (root / ".git" / "config").is_file() and (root / ".env").is_file()


@pytest.mark.parametrize(
    ("url_path", "expected"),
    [
        ("/", "index.html"),
        ("", "index.html"),
        ("/index.html", "index.html"),
        ("/index.html?v=2", "index.html"),
        ("/index.html#top", "index.html"),
        ("/?a=../../outside", "index.html"),
        ("/js/app.js", "js/app.js"),
        ("//js//app.js", "js/app.js"),
        ("/%6As/app.js", "js/app.js"),
        ("/sp%20ace.txt", "sp ace.txt"),
        ("/sub", "sub/index.html"),
        ("/sub/", "sub/index.html"),
        ("/inlink", "js/app.js"),
        ("/indir/app.js", "js/app.js"),
    ],
)
def test_files_inside_root_resolve(root: Path, url_path: str, expected: str) -> None:
    """Files inside the root, symlinks within it and directories with index.html resolve."""
    assert resolve(root, url_path) == root / expected


# The file cache.


@pytest.mark.parametrize(
    ("name", "content_type", "cache_control"),
    [
        ("index.html", "text/html; charset=utf-8", "no-cache"),
        ("PAGE.HTML", "text/html; charset=utf-8", "no-cache"),
        ("app.js", "text/javascript; charset=utf-8", "no-cache"),
        ("mod.mjs", "text/javascript; charset=utf-8", "no-cache"),
        ("style.css", "text/css; charset=utf-8", "no-cache"),
        ("site.json", "application/json", "no-cache"),
        ("manifest.webmanifest", "application/manifest+json", "no-cache"),
        ("icon.svg", "image/svg+xml", "public, max-age=86400"),
        ("logo.png", "image/png", "public, max-age=86400"),
        ("photo.jpg", "image/jpeg", "public, max-age=86400"),
        ("font.woff2", "font/woff2", "public, max-age=86400"),
        ("favicon.ico", "image/x-icon", "public, max-age=86400"),
        ("data.bin", DEFAULT_TYPE, "public, max-age=86400"),
        ("README", DEFAULT_TYPE, "public, max-age=86400"),
    ],
)
def test_load_content_type_and_cache_control(
    tmp_path: Path, name: str, content_type: str, cache_control: str
) -> None:
    """load() gives the type for the extension (any case) and revalidates page code."""
    path = tmp_path / name
    path.write_bytes(b"body")
    loaded = FileCache().load(path, accept_gzip=False)
    assert (loaded.body, loaded.content_type, loaded.cache_control, loaded.gzip) == (
        b"body",
        content_type,
        cache_control,
        False,
    )


def set_mtime(path: Path, seconds: int) -> None:
    """Give ``path`` a fixed modification time."""
    os.utime(path, ns=(seconds * 10**9, seconds * 10**9))


def test_etag_changes_when_the_file_changes(tmp_path: Path) -> None:
    """An edit on disk (new size, or same size with a new mtime) changes body and ETag."""
    path = tmp_path / "app.js"
    cache = FileCache()
    path.write_text("one")
    set_mtime(path, 1_000)
    first = cache.load(path, accept_gzip=False)
    assert cache.load(path, accept_gzip=False).etag == first.etag
    path.write_text("three")
    set_mtime(path, 1_000)
    second = cache.load(path, accept_gzip=False)
    path.write_text("THREE")
    set_mtime(path, 2_000)
    third = cache.load(path, accept_gzip=False)
    assert (first.body, second.body, third.body) == (b"one", b"three", b"THREE")
    assert len({first.etag, second.etag, third.etag}) == 3
    assert all(e.startswith('"') and e.endswith('"') for e in (first.etag, second.etag, third.etag))


def test_large_file_is_served_uncached(tmp_path: Path) -> None:
    """A file over max_file is still served, and an edit shows up."""
    path = tmp_path / "big.txt"
    cache = FileCache(max_file=4)
    path.write_bytes(b"0123456789")
    assert cache.load(path, accept_gzip=False).body == b"0123456789"
    path.write_bytes(b"abcdefghijk")
    assert cache.load(path, accept_gzip=False).body == b"abcdefghijk"


def test_cache_over_total_still_serves_every_file(tmp_path: Path) -> None:
    """When the cache fills up, every file is still served with its own content."""
    cache = FileCache(max_file=10, max_total=15)
    paths = []
    for index in range(5):
        path = tmp_path / f"f{index}.txt"
        path.write_bytes(f"file{index}:abc".encode())
        paths.append(path)
    for _ in range(2):
        for index, path in enumerate(paths):
            assert cache.load(path, accept_gzip=False).body == f"file{index}:abc".encode()


@pytest.fixture
def gz_pair(tmp_path: Path) -> Path:
    """``app.js`` with a ``.gz`` sibling newer than it."""
    path = tmp_path / "app.js"
    path.write_bytes(b"plain")
    set_mtime(path, 1_000)
    gz = tmp_path / "app.js.gz"
    gz.write_bytes(b"\x1f\x8bgz")
    set_mtime(gz, 2_000)
    return path


def test_gz_sibling_used_when_accepted(gz_pair: Path) -> None:
    """With accept_gzip a fresh .gz sibling is sent, typed as the original, with its own ETag."""
    cache = FileCache()
    gz = cache.load(gz_pair, accept_gzip=True)
    plain = cache.load(gz_pair, accept_gzip=False)
    assert (gz.body, gz.gzip, gz.content_type) == (b"\x1f\x8bgz", True, plain.content_type)
    assert gz.cache_control == plain.cache_control == "no-cache"
    assert (plain.body, plain.gzip) == (b"plain", False)
    assert gz.etag != plain.etag


def test_gz_sibling_same_mtime_is_fresh(gz_pair: Path) -> None:
    """A .gz written in the same instant as its source counts as fresh."""
    set_mtime(gz_pair.with_name("app.js.gz"), 1_000)
    assert FileCache().load(gz_pair, accept_gzip=True).gzip is True


def test_stale_gz_sibling_is_ignored(gz_pair: Path) -> None:
    """A .gz older than its source is ignored: the source is sent uncompressed."""
    set_mtime(gz_pair, 3_000)
    loaded = FileCache().load(gz_pair, accept_gzip=True)
    assert (loaded.body, loaded.gzip) == (b"plain", False)


def test_no_gz_sibling(tmp_path: Path) -> None:
    """Without a .gz sibling, accept_gzip changes nothing."""
    path = tmp_path / "app.js"
    path.write_bytes(b"plain")
    loaded = FileCache().load(path, accept_gzip=True)
    assert (loaded.body, loaded.gzip) == (b"plain", False)


# Security headers.


def csp_of(host: str | None) -> dict[str, str]:
    """The Content-Security-Policy for ``host``, as directive -> sources."""
    headers = dict(security_headers(host))
    directives = [d.strip() for d in headers["Content-Security-Policy"].split(";")]
    return {d.split(" ", 1)[0]: d.split(" ", 1)[1] for d in directives}


def test_csp_allows_only_own_code() -> None:
    """The CSP allows scripts and styles from the page's origin only, no inline or eval."""
    headers = dict(security_headers("chat.example.org"))
    csp = headers["Content-Security-Policy"]
    assert "unsafe-inline" not in csp and "unsafe-eval" not in csp
    directives = csp_of("chat.example.org")
    assert directives["default-src"] == "'none'"
    assert directives["script-src"] == "'self'"
    assert directives["style-src"] == "'self'"
    assert directives["frame-ancestors"] == "'none'"
    assert directives["base-uri"] == "'none'"
    assert directives["img-src"] == "'self' data: http: https:"


@pytest.mark.parametrize(
    "host", ["chat.example.org", "chat.example.org:3000", "[::1]:3000", "10.0.0.2:80"]
)
def test_csp_connects_to_same_host_websocket(host: str) -> None:
    """connect-src allows ws: and wss: to the request's own Host, port included."""
    assert csp_of(host)["connect-src"] == f"'self' ws://{host} wss://{host}"


@pytest.mark.parametrize(
    "host",
    [
        None,
        "",
        "evil.org; script-src *",
        "a b",
        "a'b",
        'a"b',
        "a\r\nSet-Cookie: x=1",
        "<script>",
        "*",
        "x/y",
        "a" * 256,
    ],
)
def test_csp_does_not_reflect_unsafe_host(host: str | None) -> None:
    """A Host with characters outside a host name's is not reflected; connect-src is 'self'."""
    assert csp_of(host)["connect-src"] == "'self'"
    for _, value in security_headers(host):
        assert "\n" not in value and "\r" not in value


def test_csp_does_not_reflect_host_with_trailing_newline() -> None:
    """A Host ending in a newline is not reflected into the CSP."""
    for _, value in security_headers("example.org\n"):
        assert "\n" not in value


def test_other_security_headers() -> None:
    """Every response forbids sniffing, framing and referrers; no COOP (ignored over plain http)."""
    headers = dict(security_headers(None))
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert headers["Referrer-Policy"] == "no-referrer"
    assert headers["X-Frame-Options"] == "DENY"
    assert "Cross-Origin-Opener-Policy" not in headers
