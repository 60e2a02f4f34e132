namespace CondenseCluster.Shared.Comm;

public enum AllReduceFailure
{
    /// <summary>The right neighbour could not be reached.</summary>
    PeerUnreachable,
    /// <summary>A neighbour's connection ended or broke (a dead peer, or one that gave the ring up).</summary>
    StreamBroken,
    /// <summary>No frame moved either way for <see cref="DataPlaneOptions.ProgressTimeout"/>: a silent peer.</summary>
    Timeout,
    /// <summary>The owner aborted the ring (membership changed, shutdown), or an earlier failure ended this generation.</summary>
    Aborted,
    /// <summary>The left neighbour sent another frame than expected: the ranks disagree on the operation or buffer length.</summary>
    Mismatch,
    /// <summary>The left neighbour sent bytes that are no ring frame: a foreign or broken peer.</summary>
    Malformed,
    /// <summary>The right neighbour refused this rank's connection: its ring is newer or another one, or the handshake failed.</summary>
    Refused,
}

/// <summary>
/// An all-reduce that cannot complete. The ring generation it ran on is finished after it: the owner configures a new
/// ring (new generation) before the next all-reduce, and discards the buffer, which holds partial sums.
/// </summary>
public sealed class AllReduceException(AllReduceFailure reason, string detail, Exception? inner = null)
    : Exception($"{reason}: {detail}", inner)
{
    public AllReduceFailure Reason { get; } = reason;

    /// <summary>The message without the reason.</summary>
    public string Detail { get; } = detail;
}
