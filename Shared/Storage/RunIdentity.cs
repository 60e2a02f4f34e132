namespace CondenseCluster.Shared.Storage;

/// <summary>
/// A run's identity, kept in its folder (<c>run-id</c>) so that it survives coordinator restarts: a worker's memory of a
/// job counts only for the run it trained, never for a new run of the same configuration, whose replicas must start
/// from that run's own beginning (its seed, its --init-from weights).
/// </summary>
public static class RunIdentity
{
    public const string FileName = "run-id";

    /// <summary>The identity of the run in <paramref name="runFolder"/>: its own when <paramref name="resuming"/> it, a new one (written there) otherwise.</summary>
    public static string Of(string runFolder, bool resuming)
    {
        string path = Path.Combine(runFolder, FileName);
        if (resuming && File.Exists(path) && File.ReadAllText(path).Trim() is { Length: 32 } known && known.All(char.IsAsciiHexDigitLower)) return known;
        // A resumed run without a readable identity (written before identities, or damaged) gets a new one: its workers'
        // memory is then not trusted, and it continues from its checkpoint.
        string fresh = Guid.NewGuid().ToString("N");
        AtomicFile.Write(path, temp => File.WriteAllText(temp, fresh + "\n"));
        return fresh;
    }
}
