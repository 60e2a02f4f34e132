using System.Text.Json;

namespace CondenseCluster.Shared.Training;

/// <summary>Appends every step, epoch, event and the summary to a JSON-lines file (one object per line, with a "type").</summary>
public sealed class MetricsLog : ITrainingObserver, IDisposable
{
    static readonly JsonSerializerOptions Json = new() { PropertyNamingPolicy = JsonNamingPolicy.CamelCase };
    readonly StreamWriter writer;

    public MetricsLog(string path)
    {
        Directory.CreateDirectory(Path.GetDirectoryName(Path.GetFullPath(path))!);
        writer = new StreamWriter(path, append: true) { AutoFlush = true };
    }

    public void Started(RunStarted run) => Write("start", run);
    public void Step(StepMetrics step) => Write("step", step);
    public void Epoch(EpochMetrics epoch) => Write("epoch", epoch);
    public void Event(string message, EventKind kind = EventKind.Info) => Write("event", new { message, kind = kind.ToString().ToLowerInvariant() });
    public void Finished(TrainingSummary summary) => Write("summary", summary);

    void Write<T>(string type, T value)
    {
        var element = JsonSerializer.SerializeToElement(value, Json);
        var line = new Dictionary<string, object?> { ["type"] = type, ["time"] = DateTimeOffset.UtcNow };
        foreach (var property in element.EnumerateObject()) line[property.Name] = property.Value;
        writer.WriteLine(JsonSerializer.Serialize(line, Json));
    }

    public void Dispose() => writer.Dispose();
}
