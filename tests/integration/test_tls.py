"""A cluster over TLS (issue 11, "Done when"): certificates made at test time with ``openssl``.

Three CLI nodes with ``--tls-cert/--tls-key/--tls-ca`` (peers verified against the CA,
client certificates required between nodes): they form, replicate, fail over after the
master is SIGKILLed, and refuse plain HTTP; a client without the CA fails verification;
bad TLS flags exit 2 with one line.
"""

import http.client
import ssl
import subprocess
import sys
import urllib.parse

import pytest

import dkvs
from dkvs.tools.local_cluster import _PACKAGE_ROOT, LocalCluster, FAST_TIMINGS, wait_for
from dkvs.tools.tls_certs import https_call, make_ca, openssl_available

pytestmark = pytest.mark.skipif(not openssl_available(), reason="the openssl binary is not installed "
                                "(needed to make the test CA and node certificates)")

LIVENESS_SECONDS = 60.0


@pytest.fixture(scope="module")
def ca(tmp_path_factory):
    return make_ca(tmp_path_factory.mktemp("tls"))


def tls_args(ca, name):
    cert, key = ca.node(name)
    return ["--tls-cert", str(cert), "--tls-key", str(key), "--tls-ca", str(ca.cert)]


def with_client_cert(ca):
    context = ca.context()
    context.load_cert_chain(*ca.node("client"))
    return context


def status(context, url):
    try:
        code, body = https_call(url, "GET", "/status", context=context)
    except OSError:
        return None
    return body if code == 200 else None


def formed(context, nodes):
    statuses = [status(context, n.url) for n in nodes]
    if not all(statuses):
        return False
    masters = {(s.get("master") or {}).get("id") for s in statuses}
    ids = {n.id for n in nodes}
    return len(masters) == 1 and None not in masters and all(
        ids <= {m["id"] for m in s["members"] if m.get("alive")} for s in statuses)


def test_a_tls_cluster_replicates_fails_over_and_refuses_plain_http(ca, tmp_path):
    with LocalCluster(*FAST_TIMINGS, "--tls-client-auth", "required") as cluster:
        first = cluster.start(*tls_args(ca, "n1"))
        assert first.url.startswith("https://127.0.0.1:")
        nodes = [first] + [cluster.start("--join", first.url, *tls_args(ca, f"n{i}")) for i in (2, 3)]
        context = with_client_cert(ca)
        assert wait_for(lambda: formed(context, nodes), LIVENESS_SECONDS), "the TLS cluster did not form"

        # Replication: writes through every node (slaves forward over HTTPS) reach every node.
        for i in range(30):
            code, body = https_call(nodes[i % 3].url, "PUT", f"/kv/k{i}?acks=all", f"v{i}".encode(), context=context)
            assert code == 200, body
        expected = {f"k{i}": f"v{i}" for i in range(30)}

        def listed(node):
            code, body = https_call(node.url, "GET", "/kv?prefix=k&limit=100", context=context)
            return code == 200 and {it["key"]: it["value"] for it in body["items"]} == expected
        assert wait_for(lambda: all(listed(n) for n in nodes), LIVENESS_SECONDS)

        # Plain HTTP on a TLS port gets no answer: the handshake fails and the node closes.
        parts = urllib.parse.urlsplit(first.url)
        plain = http.client.HTTPConnection(parts.hostname, parts.port, timeout=5)
        with pytest.raises((OSError, http.client.HTTPException)):
            plain.request("GET", "/status")
            plain.getresponse().read()
        plain.close()

        # Without a client certificate (required here) the handshake is refused.
        with pytest.raises((OSError, http.client.HTTPException)):
            https_call(first.url, "GET", "/health", context=ca.context())

        # Failover: SIGKILL the master; the others elect a new one and keep every write.
        master_id = status(context, nodes[0].url)["master"]["id"]
        master = next(n for n in nodes if n.id == master_id)
        master.kill()
        survivors = [n for n in nodes if n is not master]

        def new_master():
            seen = [status(context, n.url) for n in survivors]
            ids = {(s or {}).get("master", {}) and s["master"].get("id") for s in seen}
            return len(ids) == 1 and None not in ids and master_id not in ids
        assert wait_for(new_master, LIVENESS_SECONDS), "no new master after the SIGKILL"

        def write_after_failover():
            try:
                code, _ = https_call(survivors[0].url, "PUT", "/kv/after?acks=majority", b"x", context=context)
            except OSError:
                return False
            return code == 200
        assert wait_for(write_after_failover, LIVENESS_SECONDS)
        for node in survivors:
            assert wait_for(lambda: listed(node), LIVENESS_SECONDS)


def test_a_client_without_the_ca_fails_verification_and_one_with_it_is_served(ca):
    with LocalCluster() as cluster:
        node = cluster.start(*tls_args(ca, "solo"))
        with pytest.raises(dkvs.Unavailable) as failed:
            dkvs.Client(node.url, timeout=3, retry_seconds=0).put("a", "1")
        assert "CERTIFICATE_VERIFY_FAILED" in str(failed.value)
        with pytest.raises(ssl.SSLCertVerificationError):
            https_call(node.url, "GET", "/health", context=ssl.create_default_context())
        code, _ = https_call(node.url, "PUT", "/kv/a", b"1", context=ca.context())
        assert code == 200
        with dkvs.Client(node.url, timeout=3, ca_file=str(ca.cert)) as client:
            client.put("b", "2")
            assert client.get("a") == "1" and client.get("b") == "2"


@pytest.mark.parametrize("flags, named", [
    (["--tls-cert", "{missing}", "--tls-key", "{missing}"], "--tls-cert"),
    (["--tls-cert", "{cert}"], "--tls-key"),
    (["--tls-cert", "{cert}", "--tls-key", "{key}", "--tls-ca", "{missing}"], "--tls-ca"),
    (["--tls-cert", "{ca_cert}", "--tls-key", "{key}"], "--tls-cert"),  # key does not match
    (["--tls-cert", "{cert}", "--tls-key", "{key}", "--tls-client-auth", "required"], "--tls-client-auth"),
    (["--tls-client-auth", "sometimes"], "--tls-client-auth"),
    (["--join", "https://127.0.0.1:9"], "--tls-cert"),
])
def test_bad_tls_flags_exit_2_with_one_line(ca, tmp_path, flags, named):
    cert, key = ca.node("bad")
    values = {"missing": str(tmp_path / "nope.pem"), "cert": str(cert), "key": str(key), "ca_cert": str(ca.cert)}
    argv = [f.format(**values) for f in flags]
    result = subprocess.run([sys.executable, "-m", "dkvs", "--port", "0", *argv], capture_output=True, text=True,
                            timeout=60, cwd=_PACKAGE_ROOT,
                            env={"PYTHONPATH": _PACKAGE_ROOT, "PATH": "/usr/bin:/bin"})
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("dkvs: error:") and named in lines[0], result.stderr
    assert "Traceback" not in result.stderr
