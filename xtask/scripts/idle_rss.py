#!/usr/bin/env python3
"""Measures `baton serve`'s resident memory under many idle connections (issue 8: 19,900 idle
connections once took RSS to 465 MB and it stayed). Starts the given `baton` binary on a scratch
data dir, opens N connections that send nothing (or half a request head with --slow), and prints
the server's RSS before, while they are held, and after the header timeout closed them.

    python3 xtask/scripts/idle_rss.py path/to/baton --connections 5000 --header-timeout 5

Prints figures only; nothing is asserted.
"""
import argparse, os, socket, subprocess, sys, tempfile, time


def rss_kb(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return -1


def closed(sock):
    try:
        return sock.recv(1, socket.MSG_DONTWAIT | socket.MSG_PEEK) == b""
    except BlockingIOError:
        return False
    except OSError:
        return True


def main():
    p = argparse.ArgumentParser()
    p.add_argument("baton")
    p.add_argument("--connections", type=int, default=5000)
    p.add_argument("--max-connections", type=int, default=512)
    p.add_argument("--header-timeout", type=int, default=5)
    p.add_argument("--slow", action="store_true", help="send half a request head on each")
    a = p.parse_args()
    with tempfile.TemporaryDirectory() as root:
        port = free_port()
        os.makedirs(os.path.join(root, "project"))
        subprocess.run(["git", "init", "-q", "-b", "main", os.path.join(root, "project")], check=True)
        subprocess.run(["git", "-C", os.path.join(root, "project"), "-c", "user.name=t", "-c", "user.email=t@localhost",
                        "commit", "-q", "--allow-empty", "-m", "init"], check=True)
        with open(os.path.join(root, "baton.toml"), "w") as f:
            f.write(f'[server]\ndata_dir = "data"\nlisten = "127.0.0.1:{port}"\napi_token = "t"\n'
                    f'max_connections = {a.max_connections}\nheader_timeout_secs = {a.header_timeout}\n\n'
                    '[[repos]]\nname = "demo"\npath = "project"\nprefix = "DEMO"\n')
        log = open(os.path.join(root, "serve.log"), "w")
        server = subprocess.Popen([a.baton, "--config", os.path.join(root, "baton.toml"), "serve"], stderr=log, cwd=root)
        try:
            wait_listening(port)
            before = rss_kb(server.pid)
            socks = []
            for _ in range(a.connections):
                s = socket.socket()
                s.setblocking(False)
                try:
                    s.connect(("127.0.0.1", port))
                except BlockingIOError:
                    pass
                socks.append(s)
            time.sleep(1)
            if a.slow:
                for s in socks:
                    try:
                        s.send(b"GET /health HTTP/1.1\r\nHost: local")
                    except OSError:
                        pass
            held = rss_kb(server.pid)
            start = time.monotonic()
            deadline = start + a.header_timeout * (a.connections // a.max_connections + 2) + 30
            peak = held
            while time.monotonic() < deadline:
                peak = max(peak, rss_kb(server.pid))
                n_closed = sum(closed(s) for s in socks)
                if n_closed == len(socks):
                    break
                time.sleep(0.5)
            n_closed = sum(closed(s) for s in socks)
            after = rss_kb(server.pid)
            for s in socks:
                s.close()
            time.sleep(1)
            released = rss_kb(server.pid)
            print(f"connections={a.connections} max_connections={a.max_connections} header_timeout={a.header_timeout}s slow={a.slow}")
            print(f"rss_kb before={before} held={held} peak={peak} after_timeouts={after} after_client_close={released}")
            print(f"closed_by_server={n_closed}/{len(socks)} in {time.monotonic() - start:.1f}s")
        finally:
            server.terminate()
            server.wait(timeout=30)


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def wait_listening(port):
    for _ in range(200):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.1)
    sys.exit("baton serve never listened")


if __name__ == "__main__":
    main()
