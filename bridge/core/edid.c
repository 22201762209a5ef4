/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <string.h>

#include "edid.h"

/* Reduced blanking (CVT-RB-like): enough for any sink, small for a virtual monitor. */
#define H_FRONT 48u
#define H_SYNC 32u
#define H_BLANK 160u
#define V_FRONT 3u
#define V_SYNC 6u
#define V_BLANK 23u
#define REFRESH_HZ 60u

/* Manufacturer "VGB": three 5-bit letters ('A' = 1), big-endian. */
#define MFG_ID ((('V' - '@') << 10) | (('G' - '@') << 5) | ('B' - '@'))

/* The detailed timing descriptor of the preferred mode (E-EDID 1.4, section 3.10.2). */
static void put_dtd(uint8_t *d, uint32_t w, uint32_t h)
{
	uint64_t htotal = w + H_BLANK, vtotal = h + V_BLANK;
	/* pixel clock in 10 kHz units, rounded up; above 655.35 MHz the refresh drops */
	uint64_t clock = (htotal * vtotal * REFRESH_HZ + 9999) / 10000;
	/* physical size at 96 dpi, in mm */
	uint32_t wmm = (w * 254u + 480u) / 960u, hmm = (h * 254u + 480u) / 960u;

	if (clock > 0xffff)
		clock = 0xffff;
	d[0] = (uint8_t)clock;
	d[1] = (uint8_t)(clock >> 8);
	d[2] = (uint8_t)w;
	d[3] = (uint8_t)H_BLANK;
	d[4] = (uint8_t)(((w >> 8) & 0xf) << 4 | ((H_BLANK >> 8) & 0xf));
	d[5] = (uint8_t)h;
	d[6] = (uint8_t)V_BLANK;
	d[7] = (uint8_t)(((h >> 8) & 0xf) << 4 | ((V_BLANK >> 8) & 0xf));
	d[8] = (uint8_t)H_FRONT;
	d[9] = (uint8_t)H_SYNC;
	d[10] = (uint8_t)((V_FRONT & 0xf) << 4 | (V_SYNC & 0xf));
	d[11] = (uint8_t)(((H_FRONT >> 8) & 3) << 6 | ((H_SYNC >> 8) & 3) << 4 |
			  ((V_FRONT >> 4) & 3) << 2 | ((V_SYNC >> 4) & 3));
	d[12] = (uint8_t)wmm;
	d[13] = (uint8_t)hmm;
	d[14] = (uint8_t)(((wmm >> 8) & 0xf) << 4 | ((hmm >> 8) & 0xf));
	d[15] = 0;
	d[16] = 0;
	/* digital separate sync, hsync positive, vsync negative (as CVT-RB) */
	d[17] = 0x18 | 0x02;
}

/* A display descriptor (tag 0xfc: monitor name; 0x10: dummy). */
static void put_text(uint8_t *d, uint8_t tag, const char *text)
{
	size_t n = text ? strnlen(text, 13) : 0;

	memset(d, 0, 18);
	d[3] = tag;
	if (tag == 0x10)
		return;
	memset(d + 5, ' ', 13);
	memcpy(d + 5, text, n);
	if (n < 13)
		d[5 + n] = '\n';
}

int vgb_edid_build(uint32_t width, uint32_t height, const char *name, uint32_t serial,
		   uint8_t ret[VGB_EDID_BLOCK_SIZE])
{
	/* sRGB primaries and D65 white as 10-bit fractions: R, G, B, W (x then y). */
	static const uint16_t chroma[8] = { 655, 338, 307, 614, 154, 61, 320, 337 };
	uint8_t *e = ret, sum = 0;

	if (width == 0 || height == 0 || width > VGB_EDID_MAX_ACTIVE ||
	    height > VGB_EDID_MAX_ACTIVE)
		return -ERANGE;
	memset(e, 0, VGB_EDID_BLOCK_SIZE);
	memcpy(e, "\x00\xff\xff\xff\xff\xff\xff\x00", 8);
	e[8] = (uint8_t)(MFG_ID >> 8);
	e[9] = (uint8_t)MFG_ID;
	e[10] = 0x01; /* product code 0x0001, little-endian */
	e[12] = (uint8_t)serial;
	e[13] = (uint8_t)(serial >> 8);
	e[14] = (uint8_t)(serial >> 16);
	e[15] = (uint8_t)(serial >> 24);
	e[16] = 0;    /* week unspecified */
	e[17] = 34;   /* model year 2024 */
	e[18] = 1;    /* EDID 1.4 */
	e[19] = 4;
	e[20] = 0xa0; /* digital, 8 bits per colour, interface undefined */
	e[21] = (uint8_t)((width * 254u + 4800u) / 9600u);  /* cm at 96 dpi */
	e[22] = (uint8_t)((height * 254u + 4800u) / 9600u);
	e[23] = 120;  /* gamma 2.2 */
	e[24] = 0x06; /* RGB 4:4:4, sRGB default, preferred timing is native */
	e[25] = (uint8_t)((chroma[0] & 3) << 6 | (chroma[1] & 3) << 4 | (chroma[2] & 3) << 2 |
			  (chroma[3] & 3));
	e[26] = (uint8_t)((chroma[4] & 3) << 6 | (chroma[5] & 3) << 4 | (chroma[6] & 3) << 2 |
			  (chroma[7] & 3));
	for (unsigned i = 0; i < 8; i++)
		e[27 + i] = (uint8_t)(chroma[i] >> 2);
	/* 35..37: no established timings; 38..53: standard timings unused (0x01 0x01) */
	memset(e + 38, 0x01, 16);
	put_dtd(e + 54, width, height);
	put_text(e + 72, 0xfc, name);
	put_text(e + 90, 0x10, NULL);
	put_text(e + 108, 0x10, NULL);
	e[126] = 0; /* no extension blocks */
	for (unsigned i = 0; i < 127; i++)
		sum = (uint8_t)(sum + e[i]);
	e[127] = (uint8_t)(0x100 - sum);
	return 0;
}
