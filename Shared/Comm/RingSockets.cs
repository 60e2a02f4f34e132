using System.Net;
using System.Net.Sockets;

namespace CondenseCluster.Shared.Comm;

/// <summary>
/// Blocking stream-socket I/O as the ring uses it (measured faster and cheaper in CPU than async sockets here:
/// BENCHMARKS.md), TCP or Unix domain alike. A blocked call ends with an exception when another thread disposes the socket.
/// </summary>
static class RingSockets
{
    /// <summary>A stream socket for <paramref name="endpoint"/>: a Unix domain socket or TCP over the address's family.</summary>
    public static Socket Open(EndPoint endpoint) => endpoint is UnixDomainSocketEndPoint
        ? new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified)
        : new Socket(endpoint.AddressFamily, SocketType.Stream, ProtocolType.Tcp);

    /// <summary>No Nagle delay (every segment is sent whole at once), and kernel buffers that hold two segments each way.</summary>
    public static void Tune(Socket socket, int segmentBytes)
    {
        if (socket.ProtocolType == ProtocolType.Tcp) socket.NoDelay = true;
        int buffer = 2 * (segmentBytes + RingFrame.HeaderBytes);
        if (socket.SendBufferSize < buffer) socket.SendBufferSize = buffer;
        if (socket.ReceiveBufferSize < buffer) socket.ReceiveBufferSize = buffer;
    }

    public static void SendAll(Socket socket, ReadOnlySpan<byte> bytes)
    {
        while (!bytes.IsEmpty) bytes = bytes[socket.Send(bytes)..];
    }

    /// <summary>Fills <paramref name="into"/>; returns how many bytes came before the peer closed the connection (all of them, or fewer).</summary>
    public static int Receive(Socket socket, Span<byte> into)
    {
        int total = 0;
        while (total < into.Length)
        {
            int n = socket.Receive(into[total..]);
            if (n == 0) break;
            total += n;
        }
        return total;
    }

    /// <summary>Closes at once: unsent bytes are dropped and the peer's next read or write fails (a reset, not an orderly end).</summary>
    public static void Cut(Socket socket)
    {
        try { socket.LingerState = new LingerOption(true, 0); }
        catch (Exception e) when (e is SocketException or ObjectDisposedException) { }
        socket.Dispose();
    }
}
