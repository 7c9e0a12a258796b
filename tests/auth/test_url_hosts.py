"""Hosts the URI blacklist check takes from links, case by case (the differential audit
against SpamAssassin's URI extraction, scripts/uri_differential.py).

Each case is a link a mail client or browser follows to a host we used to miss, or a
host we used to invent from a link that goes nowhere.
"""

from __future__ import annotations

from scanner.auth.urls import from_html, from_text
from scanner.checks.uribl import Uribl
from scanner.testing.dns_server import DnsServer
from scanner.testing.tasks import task_from_bytes
from tests.auth.conftest import dns_table, make_check


def test_punctuation_after_a_link_is_not_part_of_its_host() -> None:
    found = from_text("Check out http://www.planet-one.com, or http://two.example.org; "
                      "also http://three.example.net!")
    assert found.hosts == ["www.planet-one.com", "two.example.org", "three.example.net"]


def test_a_redirect_target_ends_at_the_next_query_parameter() -> None:
    found = from_text("http://r.example.net/s?nURL=http://www.target.example.com&email=x")
    assert found.hosts == ["r.example.net", "www.target.example.com"]


def test_port_and_user_info_around_a_host_cut_short() -> None:
    found = from_text("http://user:pw@host.example.com:8080, http://paypal.com,x@evil.example/")
    assert found.hosts == ["host.example.com", "evil.example"]


def test_an_unbracketed_ipv6_address_is_no_host() -> None:
    # browsers refuse http://2001:db8::1/; its first group is no IPv4 address either
    found = from_text("http://2001:db8::1/ and http://[2001:db8::2]/")
    assert found.ips == ["2001:db8::2"]
    assert found.hosts == []


def test_html_attribute_links_cut_the_same_way() -> None:
    found = from_html('<a href="http://www.linked.example.com,">x</a>')
    assert found.hosts == ["www.linked.example.com"]


def test_character_references_in_link_attributes_are_decoded() -> None:
    found = from_html('<a href="http://ent&#105;ty-one.example.com/x">a</a>'
                      '<a href="http&#58;//entity-two.example.com/">b</a>'
                      '<a href="&#104;ttp://entity-three.example.com/">c</a>'
                      '<a href="http://entity&#x2e;four.example.com/">d</a>'
                      '<a href="http://entity-five&period;example.com/">e</a>')
    assert found.hosts == ["entity-one.example.com", "entity-two.example.com",
                           "entity-three.example.com", "entity.four.example.com",
                           "entity-five.example.com"]


def test_tabs_and_newlines_inside_link_attributes_are_removed() -> None:
    found = from_html('<a href="http://tab\tin.example.com/">a</a>'
                      '<a href="ht\ntp://newline-in.example.com/">b</a>')
    assert found.hosts == ["tabin.example.com", "newline-in.example.com"]


def test_backslashes_and_slash_counts_after_the_scheme_of_a_link_attribute() -> None:
    found = from_html('<a href="http:\\\\back-one.example.com\\x">a</a>'
                      '<a href="https:/\\back-two.example.com/">b</a>'
                      '<a href="http:/one-slash.example.com/">c</a>')
    assert found.hosts == ["back-one.example.com", "back-two.example.com",
                           "one-slash.example.com"]


def test_ipv4_hosts_in_the_forms_browsers_accept() -> None:
    found = from_text("http://0xC0A80102/ http://0300.0250.01.03/ http://0xc0.0xa8.1.4/ "
                      "http://192.168.010.6/ http://3232235777/ http://[::ffff:192.0.2.7]/")
    assert found.ips == ["192.168.1.2", "192.168.1.3", "192.168.1.4", "192.168.8.6",
                         "192.168.1.1", "192.0.2.7"]
    assert found.hosts == []


def test_numbers_that_are_no_ipv4_address_give_nothing() -> None:
    # two or three parts: in mail, a dotted quad cut short by a line break
    found = from_text("http://256.1.1.1/ http://1.2.3.4.5/ http://4294967296/ "
                      "http://09.1.1.1/ http://0x1g.1.1.1/ http://1.2.3.com/ "
                      "http://64.57.207.\n12/ http://0x7f.1/ http://61.129.6817/")
    assert found.ips == []
    assert found.hosts == ["1.2.3.com"]


def test_underscores_in_a_www_name_do_not_cut_it_short() -> None:
    # "www.under" was looked up for www.under_score.example.com
    found = from_text("see www.under_score.example.com and www.trailing.example.com_ now")
    assert found.hosts == ["www.under_score.example.com", "www.trailing.example.com"]


def test_bare_ftp_names_are_links_like_www_names() -> None:
    found = from_text("Address: ftp.files.example.com (128.9.0.32), not sftp.other.example.com")
    assert found.hosts == ["ftp.files.example.com"]


def test_percent_encoded_redirect_targets_in_text() -> None:
    found = from_text("http://www.google.com/url?q=http%3A%2F%2Fredir-target.example.com"
                      "%2Fx&sa=D")
    assert found.hosts == ["www.google.com", "redir-target.example.com"]


def test_uribl_does_not_look_up_private_or_loopback_addresses(dns_server: DnsServer) -> None:
    check = make_check(Uribl, {"dns": dns_table(dns_server), "lists": [
        {"zone": "mbl.test", "ips": True, "symbol": "URIBL_IP"}]})
    raw = (b"From: a@x.test\r\nTo: b@ours.test\r\nSubject: hi\r\n\r\n"
           b"http://127.0.0.2/ http://10.1.2.3/ http://192.168.1.1/ http://0x7f.1/ "
           b"http://172.16.0.1/ http://169.254.1.1/ http://100.64.0.1/ http://224.0.0.1/ "
           b"http://0.1.2.3/ http://203.0.113.9/ http://[2001:db8::1]/\r\n")
    with task_from_bytes(raw) as task:
        assert check.targets(task) == ([], ["203.0.113.9", "2001:db8::1"])


def test_a_redirect_target_followed_by_a_parameter_with_an_at_sign() -> None:
    # the redirector goes to www.slim.example.com; the text as a URL of its own would
    # go to the host after the "@": both are looked up
    found = from_html('<area href="http://r.example.net/s_link.php?nURL=http://www.slim.'
                      'example.com&email=me@mail.example.org">')
    assert found.hosts == ["r.example.net", "www.slim.example.com", "mail.example.org"]


def test_links_in_a_text_body_that_starts_like_header_fields(dns_server: DnsServer) -> None:
    # the decoders read such a body as an embedded mail: its first lines are visible
    # text all the same
    check = make_check(Uribl, {"dns": dns_table(dns_server), "lists": [
        {"zone": "ubl.test", "symbol": "URIBL_X"}]})
    raw = (b"From: a@x.test\r\nTo: b@ours.test\r\nSubject: hi\r\n\r\n"
           b"Severity: Security\r\nReferences: \r\n    http://www.advisory-site.com/x\r\n"
           b"\r\nThe text goes on with http://www.body-site.org/ here.\r\n")
    with task_from_bytes(raw) as task:
        domains, _ = check.targets(task)
    assert domains == ["advisory-site.com", "body-site.org"]


def test_uribl_reads_links_in_the_subject(dns_server: DnsServer) -> None:
    check = make_check(Uribl, {"dns": dns_table(dns_server), "lists": [
        {"zone": "ubl.test", "symbol": "URIBL_X"}]})
    raw = (b"From: a@x.test\r\nTo: b@ours.test\r\n"
           b"Subject: =?utf-8?q?Welcome_to_www=2Esubject-site=2Ecom?=\r\n\r\n"
           b"see http://www.body-site.org/\r\n")
    with task_from_bytes(raw) as task:
        domains, _ = check.targets(task)
    assert domains == ["body-site.org", "subject-site.com"]


def test_names_under_unknown_top_level_domains_are_not_hosts() -> None:
    # file names and words glued to a link: nothing that resolves, nothing to look up
    found = from_text("www.placeurself.html http://cnet.comhttp "
                      "http://www.ecila.frECHO http://uk.my.yahoo.comm/ www.shop.co.uk "
                      "http://sub.domain.test/ www.xn--e1afmkfd.xn--p1ai www.shop.co.za")
    # (the list has a rule for co.za, none for za alone)
    assert found.hosts == ["sub.domain.test", "www.shop.co.uk", "www.xn--e1afmkfd.xn--p1ai",
                           "www.shop.co.za"]


def test_cjk_text_right_after_a_link_is_not_part_of_its_host() -> None:
    found = from_text("請瀏覽www.aacsb.edu.請登錄 或 http://www.site-two.com請 ok")
    assert found.hosts == ["www.site-two.com", "www.aacsb.edu"]


def test_dtd_and_xml_namespace_names_are_no_links() -> None:
    # in every XHTML or Outlook message: a lookup of w3.org and microsoft.com each time
    found = from_html('<!DOCTYPE html PUBLIC "-//W3C//DTD XHTML 1.0//EN" '
                      '"http://www.w3.org/TR/xhtml1/DTD/xhtml1-transitional.dtd">'
                      '<html xmlns="http://www.w3.org/1999/xhtml" '
                      'xmlns:m="http://schemas.microsoft.com/office/2004/12/omml">'
                      '<p>see http://shown.example.com/</p><a href="http://real.example.com/">x</a>')
    assert found.hosts == ["real.example.com", "shown.example.com"]


def test_scheme_relative_links_with_extra_slashes_or_backslashes() -> None:
    found = from_html('<a href="///three.example.com/x">a</a><a href="\\\\back.example.com\\">b</a>'
                      '<img src="//two.example.com/i.png">')
    assert found.hosts == ["three.example.com", "back.example.com", "two.example.com"]
