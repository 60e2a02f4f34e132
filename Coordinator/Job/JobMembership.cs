using CondenseCluster.Shared.Cluster;
using CondenseCluster.Shared.Training;

namespace CondenseCluster.Coordinator.Job;

// Who is in the job: its members, the workers waiting to join, the ring generation.

/// <summary>A worker of the job: where its data plane listens, what it runs on, and the replica it held when it registered.</summary>
sealed record JobMember(string Id, string Endpoint, string Device, int Threads, HeldReplica? Held)
{
    public WorkerReport Report(WorkerState state) => new(Id, state, Device, Threads, Endpoint);
}

/// <summary>
/// Who is in the job: the ring's members (ordered by name, which is their rank), the workers waiting to be admitted
/// at the next step boundary, and the ring generation they stand in.
/// </summary>
sealed class JobMembership
{
    readonly List<JobMember> members = [], joiners = [];
    // Every report asks who sent it: by name, so that a step of N reports costs O(N), not O(N²).
    readonly Dictionary<string, JobMember> everyone = [];

    /// <summary>The ring's members, by rank.</summary>
    public IReadOnlyList<JobMember> Members => members;

    public IReadOnlyList<JobMember> Joiners => joiners;

    /// <summary>Members and joiners.</summary>
    public IEnumerable<JobMember> Everyone => members.Concat(joiners);

    public IEnumerable<string> Ids => members.Select(m => m.Id);

    public int Count => members.Count;

    /// <summary>The ring generation last formed (or the highest a registering worker had seen, after a coordinator restart).</summary>
    public long Generation { get; private set; }

    /// <summary>Is the worker part of the job (a member of the ring, or waiting to be admitted)?</summary>
    public bool Knows(string workerId) => everyone.ContainsKey(workerId);

    /// <summary>The member of that name; null for a joiner (joiners are few, and none while steps run) or a stranger.</summary>
    public JobMember? Member(string workerId) => everyone.GetValueOrDefault(workerId) is { } m && !joiners.Contains(m) ? m : null;

    /// <summary>A worker that registered: it joins the next ring formed.</summary>
    public void Wait(JobMember worker, long generationSeen)
    {
        joiners.Add(worker);
        everyone[worker.Id] = worker;
        // A restarted coordinator continues the numbering, so that a worker never takes a new ring for an old one.
        Generation = Math.Max(Generation, generationSeen);
    }

    /// <summary>Makes the waiting workers members, keeping the members ordered by name; returns those admitted.</summary>
    public IReadOnlyList<string> Admit()
    {
        var admitted = joiners.Select(j => j.Id).ToArray();
        members.AddRange(joiners);
        joiners.Clear();
        members.Sort((a, b) => string.CompareOrdinal(a.Id, b.Id));
        return admitted;
    }

    public void Remove(string workerId)
    {
        joiners.RemoveAll(j => j.Id == workerId);
        members.RemoveAll(m => m.Id == workerId);
        everyone.Remove(workerId);
    }

    /// <summary>Numbers a new ring of the members: (its generation, the members' data-plane endpoints by rank).</summary>
    public (long Generation, string[] Endpoints) NewRing() => (++Generation, members.Select(m => m.Endpoint).ToArray());

    /// <summary>A worker's data-plane error names its peers by endpoint; says which worker each one is.</summary>
    public string NameEndpoints(string error) =>
        members.Aggregate(error, (text, m) => text.Replace($"({m.Endpoint})", $"({m.Id} at {m.Endpoint})"));
}
