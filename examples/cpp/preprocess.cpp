// See preprocess.hpp. Compile with -ffp-contract=off: a fused multiply-add changes the rounding of
// the filter coefficients, and the contract is bit-exact.
#include "preprocess.hpp"

#include <algorithm>
#include <cmath>
#include <csetjmp>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <iterator>

#include <jpeglib.h>
#include <libexif/exif-data.h>

namespace dsedge {

// ------------------------------------------------------------------------------------------- decode

namespace {

struct JpegError {
    jpeg_error_mgr mgr;
    std::jmp_buf jump;
    char message[JMSG_LENGTH_MAX];
};

void on_jpeg_error(j_common_ptr cinfo) {
    auto* err = reinterpret_cast<JpegError*>(cinfo->err);
    (*cinfo->err->format_message)(cinfo, err->message);
    std::longjmp(err->jump, 1);
}

std::vector<unsigned char> read_file(const std::string& path) {
    std::ifstream f(path, std::ios::binary);
    if (!f) throw std::runtime_error("cannot open " + path);
    return {std::istreambuf_iterator<char>(f), std::istreambuf_iterator<char>()};
}

int exif_orientation(const unsigned char* data, unsigned int size) {
    ExifData* exif = exif_data_new_from_data(data, size);
    if (exif == nullptr) return 1;
    int value = 1;
    ExifEntry* entry = exif_content_get_entry(exif->ifd[EXIF_IFD_0], EXIF_TAG_ORIENTATION);
    if (entry != nullptr && entry->format == EXIF_FORMAT_SHORT && entry->components >= 1) {
        value = exif_get_short(entry->data, exif_data_get_byte_order(exif));
    }
    exif_data_unref(exif);
    return (value >= 1 && value <= 8) ? value : 1;
}

}  // namespace

Decoded decode_jpeg(const std::string& path) {
    std::vector<unsigned char> bytes = read_file(path);
    if (bytes.size() < 3 || bytes[0] != 0xFF || bytes[1] != 0xD8) {
        throw Unsupported(path + ": not a JPEG file (this reference decodes JPEG only)");
    }
    Decoded out;
    jpeg_decompress_struct cinfo;
    JpegError err;
    cinfo.err = jpeg_std_error(&err.mgr);
    err.mgr.error_exit = on_jpeg_error;
    std::vector<JSAMPLE> row;
    if (setjmp(err.jump)) {
        jpeg_destroy_decompress(&cinfo);
        throw std::runtime_error(path + ": corrupt JPEG: " + err.message);
    }
    jpeg_create_decompress(&cinfo);
    jpeg_mem_src(&cinfo, bytes.data(), static_cast<unsigned long>(bytes.size()));
    jpeg_save_markers(&cinfo, JPEG_APP0 + 1, 0xFFFF);  // EXIF
    jpeg_save_markers(&cinfo, JPEG_APP0 + 2, 0xFFFF);  // ICC_PROFILE
    jpeg_read_header(&cinfo, TRUE);
    for (jpeg_saved_marker_ptr m = cinfo.marker_list; m != nullptr; m = m->next) {
        if (m->marker == JPEG_APP0 + 1 && m->data_length > 6 && std::memcmp(m->data, "Exif\0\0", 6) == 0) {
            out.orientation = exif_orientation(m->data, m->data_length);
        }
        if (m->marker == JPEG_APP0 + 2 && m->data_length > 12 && std::memcmp(m->data, "ICC_PROFILE", 11) == 0) {
            out.has_icc = true;
        }
    }
    const J_COLOR_SPACE space = cinfo.jpeg_color_space;
    if (space == JCS_CMYK || space == JCS_YCCK) {
        jpeg_destroy_decompress(&cinfo);
        throw Unsupported(path + ": CMYK JPEG (convert it to RGB first; see docs/PREPROCESSING.md)");
    }
    const bool gray = space == JCS_GRAYSCALE;
    cinfo.out_color_space = gray ? JCS_GRAYSCALE : JCS_RGB;  // libjpeg defaults otherwise (ISLOW, fancy upsampling)
    jpeg_start_decompress(&cinfo);
    Image& img = out.image;
    img.width = static_cast<int>(cinfo.output_width);
    img.height = static_cast<int>(cinfo.output_height);
    img.rgb.resize(static_cast<size_t>(img.width) * img.height * 3);
    row.resize(static_cast<size_t>(img.width) * cinfo.output_components);
    while (cinfo.output_scanline < cinfo.output_height) {
        JSAMPROW ptr = row.data();
        const int y = static_cast<int>(cinfo.output_scanline);
        jpeg_read_scanlines(&cinfo, &ptr, 1);
        std::uint8_t* dst = &img.rgb[static_cast<size_t>(y) * img.width * 3];
        if (gray) {
            for (int x = 0; x < img.width; ++x) dst[3 * x] = dst[3 * x + 1] = dst[3 * x + 2] = row[x];
        } else {
            std::memcpy(dst, row.data(), static_cast<size_t>(img.width) * 3);
        }
    }
    jpeg_finish_decompress(&cinfo);
    jpeg_destroy_decompress(&cinfo);
    return out;
}

// -------------------------------------------------------------------------------------- orientation

Image apply_orientation(const Image& in, int orientation) {
    if (orientation < 2 || orientation > 8) return in;
    const int W = in.width, H = in.height;
    const bool swap = orientation >= 5;  // transpose, rotate 270, transverse, rotate 90 swap the axes
    Image out;
    out.width = swap ? H : W;
    out.height = swap ? W : H;
    out.rgb.resize(in.rgb.size());
    for (int y = 0; y < out.height; ++y) {
        for (int x = 0; x < out.width; ++x) {
            int sx = x, sy = y;
            switch (orientation) {
                case 2: sx = W - 1 - x; break;                      // FLIP_LEFT_RIGHT
                case 3: sx = W - 1 - x; sy = H - 1 - y; break;      // ROTATE_180
                case 4: sy = H - 1 - y; break;                      // FLIP_TOP_BOTTOM
                case 5: sx = y; sy = x; break;                      // TRANSPOSE
                case 6: sx = y; sy = H - 1 - x; break;              // ROTATE_270 (90 clockwise)
                case 7: sx = W - 1 - y; sy = H - 1 - x; break;      // TRANSVERSE
                case 8: sx = W - 1 - y; sy = x; break;              // ROTATE_90 (90 counter-clockwise)
            }
            std::memcpy(&out.rgb[(static_cast<size_t>(y) * out.width + x) * 3],
                        &in.rgb[(static_cast<size_t>(sy) * W + sx) * 3], 3);
        }
    }
    return out;
}

// ------------------------------------------------------------------------------------------- resize

void resized_size(int width, int height, int shorter, int* out_w, int* out_h) {
    if (width <= height) {
        *out_w = shorter;
        *out_h = static_cast<int>(static_cast<double>(shorter) * height / width);
    } else {
        *out_w = static_cast<int>(static_cast<double>(shorter) * width / height);
        *out_h = shorter;
    }
}

namespace {

constexpr int kPrecisionBits = 32 - 8 - 2;  // Pillow's Resample.c

double triangle(double x) {
    x = std::fabs(x);
    return x < 1.0 ? 1.0 - x : 0.0;
}

double bicubic(double x) {
    const double a = -0.5;
    x = std::fabs(x);
    if (x < 1.0) return ((a + 2.0) * x - (a + 3.0)) * x * x + 1;
    if (x < 2.0) return (((x - 5) * x + 8) * x - 4) * a;
    return 0.0;
}

// Pillow's precompute_coeffs + normalize_coeffs_8bpc for a full-image box.
struct Coeffs {
    int ksize = 0;
    std::vector<int> start, count;
    std::vector<std::int32_t> k;
};

Coeffs coefficients(int in_size, int out_size, const std::string& interpolation) {
    const bool cubic = interpolation == "bicubic";
    const double base_support = cubic ? 2.0 : 1.0;
    const double scale = static_cast<double>(static_cast<float>(in_size)) / out_size;
    const double filterscale = scale < 1.0 ? 1.0 : scale;
    const double support = base_support * filterscale;
    Coeffs c;
    c.ksize = static_cast<int>(std::ceil(support)) * 2 + 1;
    c.start.resize(out_size);
    c.count.resize(out_size);
    c.k.assign(static_cast<size_t>(out_size) * c.ksize, 0);
    std::vector<double> w(c.ksize);
    for (int xx = 0; xx < out_size; ++xx) {
        const double center = (xx + 0.5) * scale;
        const double ss = 1.0 / filterscale;
        int xmin = static_cast<int>(center - support + 0.5);
        if (xmin < 0) xmin = 0;
        int xmax = static_cast<int>(center + support + 0.5);
        if (xmax > in_size) xmax = in_size;
        xmax -= xmin;
        double ww = 0.0;
        for (int x = 0; x < xmax; ++x) {
            const double t = (x + xmin - center + 0.5) * ss;
            w[x] = cubic ? bicubic(t) : triangle(t);
            ww += w[x];
        }
        for (int x = 0; x < xmax; ++x) {
            const double v = ww != 0.0 ? w[x] / ww : w[x];
            c.k[static_cast<size_t>(xx) * c.ksize + x] = v < 0 ? static_cast<int>(-0.5 + v * (1 << kPrecisionBits))
                                                               : static_cast<int>(0.5 + v * (1 << kPrecisionBits));
        }
        c.start[xx] = xmin;
        c.count[xx] = xmax;
    }
    return c;
}

inline std::uint8_t clip8(int v) {
    const int s = v >> kPrecisionBits;  // arithmetic shift: floor, as Pillow's lookup table
    return static_cast<std::uint8_t>(s < 0 ? 0 : (s > 255 ? 255 : s));
}

}  // namespace

Image resize_pillow(const Image& in, int out_w, int out_h, const std::string& interpolation) {
    const Coeffs cv = coefficients(in.height, out_h, interpolation);
    const int first = cv.start[0];
    const int last = cv.start[out_h - 1] + cv.count[out_h - 1];
    const Image* src = &in;
    int row_offset = 0;  // source row of src's row 0
    Image tmp;
    if (out_w != in.width) {  // horizontal pass over the rows the vertical pass reads
        const Coeffs ch = coefficients(in.width, out_w, interpolation);
        tmp.width = out_w;
        tmp.height = last - first;
        tmp.rgb.resize(static_cast<size_t>(tmp.width) * tmp.height * 3);
        for (int y = 0; y < tmp.height; ++y) {
            const std::uint8_t* srow = &in.rgb[static_cast<size_t>(y + first) * in.width * 3];
            std::uint8_t* drow = &tmp.rgb[static_cast<size_t>(y) * out_w * 3];
            for (int xx = 0; xx < out_w; ++xx) {
                const std::int32_t* k = &ch.k[static_cast<size_t>(xx) * ch.ksize];
                int s0 = 1 << (kPrecisionBits - 1), s1 = s0, s2 = s0;
                const std::uint8_t* p = srow + static_cast<size_t>(ch.start[xx]) * 3;
                for (int x = 0; x < ch.count[xx]; ++x) {
                    s0 += p[3 * x] * k[x];
                    s1 += p[3 * x + 1] * k[x];
                    s2 += p[3 * x + 2] * k[x];
                }
                drow[3 * xx] = clip8(s0);
                drow[3 * xx + 1] = clip8(s1);
                drow[3 * xx + 2] = clip8(s2);
            }
        }
        src = &tmp;
        row_offset = first;
    }
    if (out_h == in.height) return *src;
    Image out;
    out.width = src->width;
    out.height = out_h;
    out.rgb.resize(static_cast<size_t>(out.width) * out_h * 3);
    const size_t stride = static_cast<size_t>(src->width) * 3;
    for (int yy = 0; yy < out_h; ++yy) {
        const std::int32_t* k = &cv.k[static_cast<size_t>(yy) * cv.ksize];
        const int ymin = cv.start[yy] - row_offset;
        std::uint8_t* drow = &out.rgb[static_cast<size_t>(yy) * stride];
        for (size_t xc = 0; xc < stride; ++xc) {
            int s = 1 << (kPrecisionBits - 1);
            for (int y = 0; y < cv.count[yy]; ++y) s += src->rgb[(ymin + y) * stride + xc] * k[y];
            drow[xc] = clip8(s);
        }
    }
    return out;
}

// ------------------------------------------------------------------------------ crop and normalise

std::vector<float> crop_normalise(const Image& in, const PreprocessParams& p) {
    const int c = p.crop;
    // Python's round(): half to even, which std::nearbyint does in the default rounding mode
    const int left = static_cast<int>(std::nearbyint((in.width - c) / 2.0));
    const int top = static_cast<int>(std::nearbyint((in.height - c) / 2.0));
    if (left < 0 || top < 0 || left + c > in.width || top + c > in.height) {
        throw std::runtime_error("crop larger than the resized image");
    }
    std::vector<float> out(static_cast<size_t>(3) * c * c);
    for (int ch = 0; ch < 3; ++ch) {
        for (int y = 0; y < c; ++y) {
            for (int x = 0; x < c; ++x) {
                const std::uint8_t v = in.rgb[(static_cast<size_t>(top + y) * in.width + left + x) * 3 + ch];
                const float scaled = static_cast<float>(v) / 255.0f;
                out[(static_cast<size_t>(ch) * c + y) * c + x] = (scaled - p.mean[ch]) / p.stdev[ch];
            }
        }
    }
    return out;
}

std::vector<float> preprocess(const Decoded& decoded, const PreprocessParams& p) {
    const Image oriented = apply_orientation(decoded.image, decoded.orientation);
    int w = 0, h = 0;
    resized_size(oriented.width, oriented.height, p.resize, &w, &h);
    const Image resized = resize_pillow(oriented, w, h, p.interpolation);
    return crop_normalise(resized, p);
}

}  // namespace dsedge
