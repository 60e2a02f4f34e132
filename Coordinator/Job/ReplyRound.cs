namespace CondenseCluster.Coordinator.Job;

/// <summary>
/// One round of questions to the workers: who must still answer, and the weight checksums the answers carried, which
/// must all agree before the job moves on (<see cref="ReplicaAgreement"/>).
/// </summary>
sealed class ReplyRound
{
    /// <summary>How often workers that have not answered an abort are probed, and how long they have to answer at all.</summary>
    public static readonly TimeSpan ProbeInterval = TimeSpan.FromMilliseconds(250), AnswerTimeout = TimeSpan.FromSeconds(15);

    readonly HashSet<string> pending = [];
    readonly List<(string Worker, string Checksum)> checksums = [];

    /// <summary>Who has not answered yet.</summary>
    public IReadOnlyCollection<string> Pending => pending;

    /// <summary>A new round: no one owes an answer, no checksum is held.</summary>
    public void Clear()
    {
        pending.Clear();
        checksums.Clear();
    }

    /// <summary>The worker owes an answer.</summary>
    public void Ask(string workerId) => pending.Add(workerId);

    /// <summary>Did the worker owe an answer? It no longer does.</summary>
    public bool Answered(string workerId) => pending.Remove(workerId);

    /// <summary>The worker left: no answer is awaited from it.</summary>
    public void Forget(string workerId) => pending.Remove(workerId);

    /// <summary>Answers are awaited from no one in particular (e.g. rank 0 answers for all; every worker's failure still arrives).</summary>
    public void ExpectNoOne() => pending.Clear();

    public void Checksum(string workerId, string checksum) => checksums.Add((workerId, checksum));

    public void Checksums(IEnumerable<(string Worker, string Checksum)> reported) => checksums.AddRange(reported);

    /// <summary>Once all <paramref name="members"/> answered with a checksum: the checksums (the round's are then cleared); null before.</summary>
    public IReadOnlyList<(string Worker, string Checksum)>? Complete(int members)
    {
        if (pending.Count > 0 || checksums.Count < members) return null;
        var reports = checksums.ToArray();
        checksums.Clear();
        return reports;
    }

    /// <summary>Should workers that owe an answer <paramref name="waited"/> after it was asked for be probed again, or are they late for good?</summary>
    public static bool Late(TimeSpan waited) => waited >= AnswerTimeout;
}
