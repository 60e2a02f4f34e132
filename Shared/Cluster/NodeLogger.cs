using System.Text.RegularExpressions;
using Akka.Event;

namespace CondenseCluster.Shared.Cluster;

/// <summary>
/// Every node's Akka logger (cluster.conf's <c>akka.loggers</c>): Akka's warnings that a peer is gone or cannot be
/// reached, which follow every worker's loss that the job reports and handles itself, print as one plain line
/// (<see cref="PeerLine"/>); every other event prints as Akka's own console logger prints it, stack traces included.
/// </summary>
public sealed partial class NodeLogger : DefaultLogger
{
    protected override void Print(LogEvent e)
    {
        if (PeerLine(e) is not string line) base.Print(e);
        // Akka applies the node's log filter (ClusterNode.PeerExitNoise) in the printing that this line bypasses.
        else if (Context.System.Settings.LogFilter.ShouldTryKeepMessage(e, out _)) Console.WriteLine(line);
    }

    /// <summary>
    /// The plain line for a warning about a peer that is gone or cannot be reached, or null for any other event. Akka
    /// prints these with a timestamp, thread and actor path, whole member records, and (for a failed connection) the
    /// cause's stack trace spread over many lines; the line keeps what a user can act on: who, from where, and why.
    /// </summary>
    public static string? PeerLine(LogEvent e)
    {
        if (e is not Warning) return null;
        string text = e.Message?.ToString() ?? "";

        var unreachable = UnreachablePattern().Match(text);
        if (unreachable.Success)
        {
            var members = MemberPattern().Matches(unreachable.Groups["members"].Value)
                .Select(m => $"{HostPort(m.Groups["address"].Value)} ({m.Groups["roles"].Value})");
            return $"akka: {string.Join(", ", members)} unreachable from {HostPort(unreachable.Groups["self"].Value)} ({unreachable.Groups["roles"].Value})";
        }
        var refused = ConnectPattern().Match(text);
        if (refused.Success)
            return $"akka: cannot connect to {HostPort(refused.Groups["peer"].Value)} ({Why(refused.Groups["cause"].Success ? refused.Groups["cause"].Value : refused.Groups["reason"].Value)}); " +
                $"messages to it are dropped for {refused.Groups["ms"].Value} ms";
        var failed = AssociationPattern().Match(text);
        if (failed.Success)
            return $"akka: the connection to {HostPort(failed.Groups["peer"].Value)} failed ({Why(failed.Groups["reason"].Value)}); messages to it are dropped for {failed.Groups["ms"].Value} ms";
        var quarantined = QuarantinePattern().Match(text);
        if (quarantined.Success)
            return $"akka: {HostPort(quarantined.Groups["peer"].Value)} is quarantined; that process must restart to join again";
        return null;
    }

    /// <summary>akka.tcp://condense@10.0.0.5:4053 → 10.0.0.5:4053.</summary>
    static string HostPort(string address) => AddressPattern().Match(address) is { Success: true } m ? m.Groups["hostPort"].Value : address;

    /// <summary>A reason or exception as its first line (type and message): its stack trace stays out.</summary>
    static string Why(string exception) => exception.Split('\n', 2)[0].Trim().TrimEnd(']');

    [GeneratedRegex(@"^Cluster Node \[(?<self>[^\]]+)\] - Marking node\(s\) as UNREACHABLE \[(?<members>.*)\]\. Node roles \[(?<roles>[^\]]*)\]", RegexOptions.Singleline)]
    private static partial Regex UnreachablePattern();

    [GeneratedRegex(@"Member\(address = (?<address>[^,]+),.*?role=\[(?<roles>[^\]]*)\]")]
    private static partial Regex MemberPattern();

    [GeneratedRegex(@"^Tried to associate with unreachable remote address \[(?<peer>[^\]]+)\]\. Address is now gated for (?<ms>\d+) ms.*?Reason: \[(?<reason>[^\r\n]*?)\](?: Caused by: \[(?<cause>[^\r\n]*))?", RegexOptions.Singleline)]
    private static partial Regex ConnectPattern();

    [GeneratedRegex(@"^Association with remote system (?<peer>\S+) has failed; address is now gated for (?<ms>\d+) ms\. Reason is: \[(?<reason>[^\r\n]*)")]
    private static partial Regex AssociationPattern();

    [GeneratedRegex(@"^Association to \[(?<peer>[^\]]+)\] (?:having|with) UID \[-?\d+\] is irrecoverably failed")]
    private static partial Regex QuarantinePattern();

    [GeneratedRegex(@"^akka(?:\.tcp)?://[^@/]+@(?<hostPort>[^/\s]+)")]
    private static partial Regex AddressPattern();
}
