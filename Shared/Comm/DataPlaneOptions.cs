using System.Net;

namespace CondenseCluster.Shared.Comm;

/// <summary>Which sockets ring connections take.</summary>
public enum RingTransportKind
{
    /// <summary>
    /// To a neighbour on the same host a Unix domain socket for the frame headers, and their payloads through a
    /// shared-memory file in /dev/shm (on a Unix socket alone where /dev/shm cannot hold one); TCP to any other.
    /// </summary>
    Auto,
    /// <summary>A Unix domain socket, payloads included, to a neighbour on the same host; TCP to any other.</summary>
    Unix,
    /// <summary>TCP to every neighbour (to measure it, or where Unix sockets do not reach).</summary>
    Tcp,
}

public sealed record DataPlaneOptions
{
    /// <summary>The IP address the gRPC endpoint and the ring listener bind; 0.0.0.0 for every interface.</summary>
    public string ListenAddress { get; init; } = "127.0.0.1";

    /// <summary>The gRPC port (ring set-up, replica state, probes); 0 picks a free one, which <see cref="DataPlaneNode.StartAsync"/> reports.</summary>
    public int Port { get; init; }

    /// <summary>The ring listener's TCP port, where left neighbours on other hosts connect; 0 picks a free one.</summary>
    public int RingPort { get; init; }

    public RingTransportKind Transport { get; init; } = RingTransportKind.Auto;

    /// <summary>
    /// The tmpfs where ranks on one host put their ring payloads (<see cref="RingTransportKind.Auto"/>): 4 MiB per ring
    /// connection, and the buffers of <see cref="DataPlaneNode.CreateBuffer"/> (a worker's packed gradients). Another
    /// memory-backed folder where /dev/shm is small, e.g. a Kubernetes memory emptyDir.
    /// </summary>
    public string SharedMemoryFolder { get; init; } = SharedMemoryFile.DefaultFolder;

    /// <summary>
    /// An all-reduce fails with <see cref="AllReduceFailure.Timeout"/> when no frame moved either way for this long.
    /// It also bounds how far apart workers may reach the same all-reduce, i.e. how much longer one worker's compute
    /// may take than another's (a straggler, a loaded machine: measured over 10 s on 2 shared cores), so it is
    /// generous; a dead peer is seen at once by its broken connection, a stopped one by the cluster's failure detector.
    /// </summary>
    public TimeSpan ProgressTimeout { get; init; } = TimeSpan.FromSeconds(60);

    /// <summary>
    /// Payload bytes per frame: a chunk travels as segments of this size, so that sending, receiving and summing
    /// overlap (a rank forwards a segment as soon as it has summed it). 1 MiB: with segments read in place, fewer and
    /// larger segments spare thread wake-ups; measured with bench/AllReduce (BENCHMARKS.md).
    /// </summary>
    public int SegmentBytes { get; init; } = 1024 * 1024;

    /// <summary>How long a connection may take to say who it is, and a neighbour's data endpoint to answer ring set-up.</summary>
    public TimeSpan HandshakeTimeout { get; init; } = TimeSpan.FromSeconds(10);

    /// <summary>Frames carry at most this: a header field holds the count, and a frame's payload is held in memory.</summary>
    internal const int MaxSegmentBytes = 64 * 1024 * 1024;

    internal int SegmentFloats => SegmentBytes / sizeof(float);

    public void Validate()
    {
        if (!IPAddress.TryParse(ListenAddress, out _)) throw new ArgumentException($"listen address '{ListenAddress}' is not an IP address");
        if (Port is < 0 or > 65535) throw new ArgumentException($"port {Port} is out of range");
        if (RingPort is < 0 or > 65535) throw new ArgumentException($"ring port {RingPort} is out of range");
        if (!Path.IsPathFullyQualified(SharedMemoryFolder)) throw new ArgumentException($"shared-memory folder '{SharedMemoryFolder}' must be an absolute path");
        if (ProgressTimeout <= TimeSpan.Zero) throw new ArgumentException($"progress timeout {ProgressTimeout} must be positive");
        if (HandshakeTimeout <= TimeSpan.Zero) throw new ArgumentException($"handshake timeout {HandshakeTimeout} must be positive");
        if (SegmentBytes < sizeof(float) || SegmentBytes % sizeof(float) != 0 || SegmentBytes > MaxSegmentBytes)
            throw new ArgumentException($"segment size {SegmentBytes} B must be a multiple of 4 between 4 B and {MaxSegmentBytes} B");
    }
}
