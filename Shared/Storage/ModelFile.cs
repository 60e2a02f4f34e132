using System.Text;
using System.Text.Json;
using CondenseCluster.Shared.Model;
using TorchSharp;

namespace CondenseCluster.Shared.Storage;

/// <summary>
/// The native model format: configuration, form and weights in one checksummed file, so a model (training or
/// converted form) loads without being told its shape.
/// </summary>
public static class ModelFile
{
    static readonly byte[] Magic = "CCMODEL1"u8.ToArray();

    sealed record Header(CondenseNetConfig Config, ModelForm Form);

    public static void Save(CondenseNet model, string path) =>
        ChecksummedFile.Write(path, Magic, stream =>
        {
            using var writer = new BinaryWriter(stream, Encoding.UTF8, leaveOpen: true);
            writer.Write(JsonSerializer.Serialize(new Header(model.Config, model.Form)));
            model.save(writer);
        });

    public static CondenseNet Load(string path, torch.Device? device = null)
    {
        byte[] body = ChecksummedFile.Read(path, Magic, "model");
        using var reader = new BinaryReader(new MemoryStream(body), Encoding.UTF8);
        var header = JsonSerializer.Deserialize<Header>(reader.ReadString())
            ?? throw new CorruptFileException($"model '{path}' has an empty header");
        var model = new CondenseNet(header.Config, header.Form);
        model.load(reader, strict: true);
        return device is null ? model : model.to(device);
    }
}
