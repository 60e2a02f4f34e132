using System.Net;

namespace CondenseCluster.Shared.Comm;

public sealed record DataPlaneOptions
{
    /// <summary>The IP address Kestrel listens on (HTTP/2 without TLS); 0.0.0.0 for every interface.</summary>
    public string ListenAddress { get; init; } = "127.0.0.1";

    /// <summary>The port to listen on; 0 picks a free one, which <see cref="DataPlaneNode.StartAsync"/> reports.</summary>
    public int Port { get; init; }

    /// <summary>
    /// An all-reduce fails with <see cref="AllReduceFailure.Timeout"/> when no message moved either way for this long.
    /// It also bounds how far apart workers may reach the same all-reduce, i.e. how much longer one worker's compute
    /// may take than another's (a straggler, a loaded machine: measured over 10 s on 2 shared cores), so it is
    /// generous; a dead peer is seen at once by its broken stream, a stopped one by the cluster's failure detector.
    /// </summary>
    public TimeSpan ProgressTimeout { get; init; } = TimeSpan.FromSeconds(60);

    /// <summary>Payload bytes per message: large chunks travel as several messages, so sending and receiving overlap.</summary>
    public int MessageBytes { get; init; } = 1 << 20;

    /// <summary>Messages from the left neighbour held before its stream is slowed down (HTTP/2 flow control).</summary>
    public int InboxMessages { get; init; } = 8;

    /// <summary>gRPC's default limit, which a message must stay under with its header fields.</summary>
    internal const int MaxGrpcMessageBytes = 4 * 1024 * 1024;

    internal int MessageFloats => MessageBytes / sizeof(float);

    public void Validate()
    {
        if (!IPAddress.TryParse(ListenAddress, out _)) throw new ArgumentException($"listen address '{ListenAddress}' is not an IP address");
        if (Port is < 0 or > 65535) throw new ArgumentException($"port {Port} is out of range");
        if (ProgressTimeout <= TimeSpan.Zero) throw new ArgumentException($"progress timeout {ProgressTimeout} must be positive");
        if (MessageBytes < sizeof(float) || MessageBytes % sizeof(float) != 0 || MessageBytes > MaxGrpcMessageBytes - 1024)
            throw new ArgumentException($"message size {MessageBytes} B must be a multiple of 4 between 4 B and {MaxGrpcMessageBytes - 1024} B");
        if (InboxMessages < 1) throw new ArgumentException($"inbox capacity {InboxMessages} must be at least 1");
    }
}
