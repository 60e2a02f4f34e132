using SkiaSharp;

namespace CondenseCluster.Bench;

/// <summary>
/// A temporary image-folder tree (<c>root/&lt;class&gt;/&lt;image&gt;.JPEG</c>) of photo-sized JPEGs, deleted on dispose.
/// The images are a colour gradient with per-pixel noise and a few shapes: noise gives the JPEG decoder a photo's
/// amount of entropy-coded data (a flat image decodes much faster than a real one).
/// </summary>
sealed class SyntheticImageFolder : IDisposable
{
    const int Quality = 90;

    SyntheticImageFolder(string root, string[] classNames, long bytes) => (Root, ClassNames, TotalBytes) = (root, classNames, bytes);

    public string Root { get; }
    public string[] ClassNames { get; }
    public long TotalBytes { get; }

    public static SyntheticImageFolder Create(int images, int classes, int width, int height, int seed = 0)
    {
        string root = Path.Combine(Path.GetTempPath(), $"condense-bench-images-{Guid.NewGuid():N}");
        var classNames = Enumerable.Range(0, classes).Select(c => $"class{c:D2}").ToArray();
        long bytes = 0;
        try
        {
            foreach (string name in classNames) Directory.CreateDirectory(Path.Combine(root, name));
            var random = new Random(seed);
            for (int i = 0; i < images; i++)
            {
                byte[] jpeg = Encode(random, width, height);
                File.WriteAllBytes(Path.Combine(root, classNames[i % classes], $"{i:D6}.JPEG"), jpeg);
                bytes += jpeg.Length;
            }
        }
        catch
        {
            Directory.Delete(root, recursive: true);
            throw;
        }
        return new SyntheticImageFolder(root, classNames, bytes);
    }

    static byte[] Encode(Random random, int width, int height)
    {
        var pixels = new byte[width * height * 4];
        var noise = new byte[pixels.Length];
        random.NextBytes(noise);
        int red = random.Next(128), green = random.Next(128);
        for (int y = 0, i = 0; y < height; y++)
            for (int x = 0; x < width; x++, i += 4)
            {
                pixels[i] = Noisy(red + x * 128 / width, noise[i]);
                pixels[i + 1] = Noisy(green + y * 128 / height, noise[i + 1]);
                pixels[i + 2] = Noisy((x + y) * 255 / (width + height), noise[i + 2]);
                pixels[i + 3] = 255;
            }

        using var bitmap = new SKBitmap(new SKImageInfo(width, height, SKColorType.Rgba8888, SKAlphaType.Opaque));
        System.Runtime.InteropServices.Marshal.Copy(pixels, 0, bitmap.GetPixels(), pixels.Length);
        using (var canvas = new SKCanvas(bitmap))
        using (var paint = new SKPaint { IsAntialias = true })
            for (int shape = 0; shape < 12; shape++)
            {
                paint.Color = new SKColor((byte)random.Next(256), (byte)random.Next(256), (byte)random.Next(256), 160);
                canvas.DrawCircle(random.Next(width), random.Next(height), random.Next(10, height / 3), paint);
            }
        using var data = bitmap.Encode(SKEncodedImageFormat.Jpeg, Quality);
        return data.ToArray();
    }

    /// <summary>A channel value with ±48 of noise, clamped to a byte.</summary>
    static byte Noisy(int value, byte noise) => (byte)Math.Clamp(value + noise * 96 / 255 - 48, 0, 255);

    public void Dispose() => Directory.Delete(Root, recursive: true);
}
