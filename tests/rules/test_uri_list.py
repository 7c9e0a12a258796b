"""The URI list ``uri`` rules see, case by case (the differential audit against
SpamAssassin's get_uri_list, scripts/uri_differential.py): links we missed, hosts we
invented, messages that broke the list."""

from __future__ import annotations

from scanner.rules.uris import text_uri_regex
from scanner.rules.views import MessageView
from tests.rules.helpers import message


def uris(body: str, ctype: str = "text/html; charset=utf-8") -> list[str]:
    raw = message(body=body, ctype=ctype)
    view = MessageView(raw, uri_finder=text_uri_regex(()))
    return [u.decode("utf-8", "replace") for u in view.uris]


def test_a_link_ending_in_a_slash_is_no_base_for_later_relative_links() -> None:
    found = uris('<a href="http://legit.example.com/">x</a> <a href="evil.example.net/x">y</a>')
    assert "http://evil.example.net/x" in found
    assert not any(u.startswith("http://legit.example.com/evil") for u in found)


def test_base_href_without_a_trailing_slash_makes_relative_links_absolute() -> None:
    found = uris('<html><head><base href="http://base.example.com"></head><body>'
                 '<a href="page.html">a</a> <img src="/img/p.png"></body></html>')
    assert "http://base.example.com/page.html" in found
    assert "http://base.example.com/img/p.png" in found


def test_a_base_or_link_that_does_not_parse_breaks_nothing() -> None:
    # urljoin raised ValueError on the unclosed IPv6 bracket: the whole rules check failed
    found = uris('<a href="http://[/">a</a> <a href="page.html">b</a>')
    assert "http://[/" in found
    found = uris('<base href="http://[broken/"><a href="page.html">b</a>'
                 '<a href="http://after.example.com/">c</a>')
    assert "http://after.example.com/" in found


def test_unicode_dots_in_a_host_are_dots_and_invent_no_single_label_host() -> None:
    found = uris("see http://ideo\u3002dot\u3002com/ and http://full\uff0edot\uff0enet/\n",
                 ctype="text/plain; charset=utf-8")
    assert "http://ideo.dot.com/" in found and "http://full.dot.net/" in found
    assert not any(".com.com" in u or ".net.com" in u for u in found)


def test_a_top_level_domain_in_another_script_is_not_trimmed_as_junk() -> None:
    # trimming ".рф" as junk left "www.пример" (HTML) or "www" (UTF-8 text, read byte
    # by byte), which then gained an invented ".com"
    found = uris("visit www.\u043f\u0440\u0438\u043c\u0435\u0440.\u0440\u0444 today\n",
                 ctype="text/plain; charset=utf-8")
    assert found == ["http://www.пример.рф"]
    found = uris('<a href="http://www.\u043f\u0440\u0438\u043c\u0435\u0440.\u0440\u0444/">x</a>')
    assert found == ["http://www.пример.рф/"]


def test_a_name_followed_by_text_in_another_script_is_listed_on_its_own() -> None:
    # GB2312 text right after the host: kept whole, and the ASCII name added
    raw = message(body="", ctype="text/plain; charset=gb2312").replace(
        b"\n\n", b"\n\n" + "请浏览www.aacsb.edu.请登录 谢谢\n".encode("gb2312"), 1)
    view = MessageView(raw, uri_finder=text_uri_regex(()))
    assert b"http://www.aacsb.edu" in view.uris


def test_an_ellipsis_between_words_is_no_bare_host_name() -> None:
    found = uris("Buy insurance...now, users.....er and cams...free at shop.example.com\n",
                 ctype="text/plain")
    assert found == ["http://shop.example.com"]


def test_extra_slashes_after_the_scheme_or_before_a_scheme_relative_host() -> None:
    # a scheme-relative //two.example.com became http:////two.example.com
    found = uris('<a href="///three.example.com/x">a</a> <a href="http:////four.example.com/">b'
                 r'</a> <a href="\\\five.example.com/">c</a> <img src="//two.example.com/i">')
    assert {"http://three.example.com/x", "http://four.example.com/",
            "http://five.example.com/", "http://two.example.com/i"} <= set(found)
