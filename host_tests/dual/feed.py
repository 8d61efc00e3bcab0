"""A message handed to Store.deliver_stream by a test or a benchmark, under both runtimes."""


def reader(data, most=None):
    """A `readinto(buf)` over the bytes `data`, as deliver_stream reads a peer: it fills `buf` with
    the next bytes (at most `most` a call, when given) and returns how many; 0 at the end."""
    pos = [0]

    def readinto(buf):
        n = min(len(buf), len(data) - pos[0])
        if most is not None:
            n = min(n, most)
        buf[:n] = data[pos[0] : pos[0] + n]
        pos[0] += n
        return n

    return readinto
