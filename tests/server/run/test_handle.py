"""What ``serve()`` returns: a handle that reads well, says what it serves, and stops once (also as a
context manager)."""

from __future__ import annotations

from pipeserve_nb import BatchPolicy, ServerConfig, running_servers, serve


def test_the_handle_reads_well_and_stops_once() -> None:
    with serve(lambda xs: xs, name="shown", policy=BatchPolicy(max_batch_size=4)) as server:
        assert repr(server).startswith(f"<ServerHandle 'shown' running at {server.url}")
        assert "policy=BatchPolicy(max_batch_size=4" in repr(server)
        html = server._repr_html_()
        assert server.url in html and "<table" in html and "server.stop()" in html
        assert running_servers() == {"shown": server}
        assert server.config == ServerConfig() and server.failure is None and server.stuck_call_s is None
        assert server.model == "<lambda>" and server.device is None and server.dtype is None
        assert server.health()["status"] == "ok" and server.stats()["requests"] == 0
    assert "stopped" in repr(server) and not server.running and running_servers() == {}
    server.stop()  # a second stop is harmless
    assert "server.stop()" not in server._repr_html_()  # a stopped server offers no hints
