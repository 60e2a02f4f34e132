using System.Text.Json;
using System.Text.Json.Serialization;

namespace CondenseCluster.Shared.Training;

/// <summary>Appends every step, epoch, event and the summary to a JSON-lines file (one object per line, with a "type").</summary>
public sealed class MetricsLog : ITrainingObserver, IDisposable
{
    // Enums by name, so that the file reads without the code: "change": "Recovery", "failure": "StreamBroken".
    static readonly JsonSerializerOptions Json = new() { PropertyNamingPolicy = JsonNamingPolicy.CamelCase, Converters = { new JsonStringEnumConverter() } };
    readonly StreamWriter writer;

    public MetricsLog(string path)
    {
        Directory.CreateDirectory(Path.GetDirectoryName(Path.GetFullPath(path))!);
        writer = new StreamWriter(path, append: true) { AutoFlush = true };
    }

    public void Started(RunStarted run) => Write("start", run);
    public void Step(StepMetrics step) => Write("step", step);
    public void Epoch(EpochMetrics epoch) => Write("epoch", epoch);
    /// <summary>The event's values, its record's name as "event", its kind and its text as "message".</summary>
    public void Event(TrainingEvent e)
    {
        var line = JsonSerializer.SerializeToElement(e, e.GetType(), Json).EnumerateObject().ToDictionary(p => p.Name, p => (object?)p.Value);
        line["event"] = e.GetType().Name;
        line["kind"] = e.Kind.ToString().ToLowerInvariant();
        line["message"] = e.Text();
        Write("event", line);
    }
    public void Finished(TrainingSummary summary) => Write("summary", summary);

    void Write<T>(string type, T value)
    {
        var element = JsonSerializer.SerializeToElement<object?>(value, Json);
        var line = new Dictionary<string, object?> { ["type"] = type, ["time"] = DateTimeOffset.UtcNow };
        foreach (var property in element.EnumerateObject()) line[property.Name] = property.Value;
        writer.WriteLine(JsonSerializer.Serialize(line, Json));
    }

    public void Dispose() => writer.Dispose();
}
