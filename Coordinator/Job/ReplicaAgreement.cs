namespace CondenseCluster.Coordinator.Job;

/// <summary>
/// Which replicas diverged, from the checksums they reported for the same step (DESIGN.md §2: divergence is detected,
/// not assumed away). Pure.
/// </summary>
public static class ReplicaAgreement
{
    /// <summary>
    /// The workers whose checksum differs from the reference: the checksum most workers report, or when no single one
    /// has the most, the first worker's (rank 0, whose state checkpoints are written from). Empty when all agree.
    /// </summary>
    public static IReadOnlyList<string> Diverging(IReadOnlyList<(string Worker, string Checksum)> reports, out string reference)
    {
        reference = "";
        if (reports.Count == 0) return [];
        var counts = reports.GroupBy(r => r.Checksum).Select(g => (Checksum: g.Key, Count: g.Count())).OrderByDescending(c => c.Count).ToArray();
        reference = counts.Length > 1 && counts[0].Count == counts[1].Count ? reports[0].Checksum : counts[0].Checksum;
        string agreed = reference;
        return reports.Where(r => r.Checksum != agreed).Select(r => r.Worker).ToArray();
    }

    /// <summary>A clear error naming the diverging workers, or null when all agree.</summary>
    public static string? Describe(string what, long step, IReadOnlyList<(string Worker, string Checksum)> reports) =>
        Describe(what, step, reports, Diverging(reports, out string reference), reference);

    /// <summary>Do more than half of the replicas agree, so the job can go on with them alone?</summary>
    public static bool MajorityAgrees(IReadOnlyList<(string Worker, string Checksum)> reports, IReadOnlyList<string> diverging) =>
        diverging.Count * 2 < reports.Count;

    public static string? Describe(string what, long step, IReadOnlyList<(string Worker, string Checksum)> reports, IReadOnlyList<string> diverging, string reference)
    {
        if (diverging.Count == 0) return null;
        var holders = reports.Where(r => r.Checksum == reference).Select(r => r.Worker);
        var outliers = reports.Where(r => diverging.Contains(r.Worker)).Select(r => $"{r.Worker} has {r.Checksum}");
        return $"{string.Join(", ", diverging)} diverged: {what} at step {step} differ ({string.Join(", ", outliers)}; " +
            $"{string.Join(", ", holders)} {(holders.Count() == 1 ? "has" : "have")} {reference})";
    }
}
