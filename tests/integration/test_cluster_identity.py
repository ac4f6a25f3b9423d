"""Cluster identity (issue 12, deliverable 1): one id per cluster, kept by every member,
shown in /status. (A data dir of another cluster refused at --join before anything changes
is one of the mistakes walked in test_operator_mistakes.py.)"""

from .procs import status, wait_until


def test_members_share_the_bootstrapped_id_and_keep_it_across_a_restart(procs, tmp_path):
    dirs = [str(tmp_path / f"n{i}") for i in range(3)]
    first = procs.start("--data-dir", dirs[0])
    nodes = [first] + [procs.start("--join", first.url, "--data-dir", d) for d in dirs[1:]]
    procs.wait_formed(nodes)
    ids = {status(n.url)["cluster_id"] for n in nodes}
    assert len(ids) == 1 and None not in ids
    cluster_id = ids.pop()
    for d in dirs:
        assert (tmp_path / d / "cluster_id").read_text().strip() == cluster_id
    port = nodes[1].port
    nodes[1].kill()
    again = procs.start("--data-dir", dirs[1], "--join", first.url, port=port)
    assert status(again.url)["cluster_id"] == cluster_id


def test_data_dirs_older_than_cluster_ids_keep_loading_and_get_one(procs, tmp_path):
    dirs = [str(tmp_path / f"n{i}") for i in range(3)]
    first = procs.start("--data-dir", dirs[0])
    nodes = [first] + [procs.start("--join", first.url, "--data-dir", d) for d in dirs[1:]]
    procs.wait_formed(nodes)
    ports = [n.port for n in nodes]
    for node in nodes:
        node.kill()
    for d in dirs:
        (tmp_path / d / "cluster_id").unlink()  # as written before cluster ids existed
    # The whole cluster restarts without --join: each node rejoins through its peers.
    again = [procs.start("--data-dir", d, port=p) for d, p in zip(dirs, ports)]
    procs.wait_formed(again)
    ids = wait_until(lambda: (lambda s: s if len(s) == 1 and None not in s else None)(
        {status(n.url)["cluster_id"] for n in again}), what="one cluster id on every member")
    cluster_id = ids.pop()
    assert all((tmp_path / d / "cluster_id").read_text().strip() == cluster_id for d in dirs)
