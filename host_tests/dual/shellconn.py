"""The quiet part of a fake connection for the server's asyncio shell (server.Server._handle), both
runtimes: a test's fake subclasses ShellConn and supplies recv_into and send."""


class ShellConn:
    def send_some(self, mv):
        return 0  # the write the shell tries first (listener.ServerConn): "would block", send() takes it

    def before_tls(self):
        pass

    async def pause(self, seconds):
        pass

    def no_limit(self):
        pass

    def limit(self, name, seconds):
        pass

    def close(self, flush=False):
        pass
