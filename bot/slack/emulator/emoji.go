package emulator

// emoji maps Slack's shortcodes (without colons) to the characters the
// Slack client shows: the status marks a runbook bot uses, and the common
// ones people type. A shortcode not listed stays as typed, as a custom
// emoji the workspace does not have would.
var emoji = map[string]string{
	// Status and progress.
	"white_check_mark": "✅", "heavy_check_mark": "✔️", "ballot_box_with_check": "☑️",
	"x": "❌", "heavy_multiplication_x": "✖️", "negative_squared_cross_mark": "❎",
	"no_entry": "⛔", "no_entry_sign": "🚫", "octagonal_sign": "🛑", "stop_sign": "🛑",
	"warning": "⚠️", "rotating_light": "🚨", "fire": "🔥", "boom": "💥", "zap": "⚡",
	"hourglass": "⌛", "hourglass_flowing_sand": "⏳", "stopwatch": "⏱️", "timer_clock": "⏲️",
	"alarm_clock": "⏰", "clock1": "🕐", "clock3": "🕒", "clock12": "🕛", "watch": "⌚",
	"gear": "⚙️", "wrench": "🔧", "hammer": "🔨", "hammer_and_wrench": "🛠️", "toolbox": "🧰",
	"arrows_counterclockwise": "🔄", "arrows_clockwise": "🔃", "repeat": "🔁", "recycle": "♻️",
	"leftwards_arrow_with_hook": "↩️", "arrow_right_hook": "↪️", "rewind": "⏪", "fast_forward": "⏩",
	"arrow_forward": "▶️", "double_vertical_bar": "⏸️", "pause_button": "⏸️",
	"black_square_for_stop": "⏹️", "black_right_pointing_double_triangle_with_vertical_bar": "⏭️",
	"information_source": "ℹ️", "question": "❓", "grey_question": "❔", "exclamation": "❗",
	"heavy_exclamation_mark": "❗", "grey_exclamation": "❕", "bangbang": "‼️", "interrobang": "⁉️",
	"sos": "🆘", "new": "🆕", "ok": "🆗", "up": "🆙", "cool": "🆒", "free": "🆓", "100": "💯",
	"construction": "🚧", "traffic_light": "🚦", "vertical_traffic_light": "🚥",
	"checkered_flag": "🏁", "triangular_flag_on_post": "🚩", "skull": "💀", "skull_and_crossbones": "☠️",
	"zzz": "💤", "sparkles": "✨", "star": "⭐", "tada": "🎉", "rocket": "🚀", "dart": "🎯",
	"trophy": "🏆", "medal": "🏅", "bulb": "💡", "mega": "📣", "loudspeaker": "📢",
	"bell": "🔔", "no_bell": "🔕", "mute": "🔇", "loud_sound": "🔊",

	// Shapes and colours.
	"red_circle": "🔴", "large_orange_circle": "🟠", "large_yellow_circle": "🟡",
	"large_green_circle": "🟢", "large_blue_circle": "🔵", "large_purple_circle": "🟣",
	"white_circle": "⚪", "black_circle": "⚫", "radio_button": "🔘",
	"red_square": "🟥", "large_orange_square": "🟧", "large_yellow_square": "🟨",
	"large_green_square": "🟩", "large_blue_square": "🟦", "white_large_square": "⬜",
	"black_large_square": "⬛", "white_square_button": "🔳", "black_square_button": "🔲",
	"large_orange_diamond": "🔶", "large_blue_diamond": "🔷", "small_orange_diamond": "🔸",
	"small_blue_diamond": "🔹", "small_red_triangle": "🔺", "small_red_triangle_down": "🔻",
	"heavy_plus_sign": "➕", "heavy_minus_sign": "➖", "heavy_division_sign": "➗",

	// Arrows and hands.
	"arrow_right": "➡️", "arrow_left": "⬅️", "arrow_up": "⬆️", "arrow_down": "⬇️",
	"arrow_up_small": "🔼", "arrow_down_small": "🔽", "arrow_upper_right": "↗️",
	"arrow_lower_right": "↘️", "twisted_rightwards_arrows": "🔀", "left_right_arrow": "↔️",
	"point_right": "👉", "point_left": "👈", "point_up": "☝️", "point_up_2": "👆", "point_down": "👇",
	"+1": "👍", "thumbsup": "👍", "-1": "👎", "thumbsdown": "👎", "ok_hand": "👌", "clap": "👏",
	"raised_hands": "🙌", "pray": "🙏", "muscle": "💪", "wave": "👋", "raised_hand": "✋", "hand": "✋",
	"eyes": "👀", "handshake": "🤝", "writing_hand": "✍️",

	// Objects a runbook talks about.
	"lock": "🔒", "unlock": "🔓", "key": "🔑", "closed_lock_with_key": "🔐", "shield": "🛡️",
	"mag": "🔍", "mag_right": "🔎", "memo": "📝", "pencil": "📝", "pencil2": "✏️",
	"clipboard": "📋", "page_facing_up": "📄", "scroll": "📜", "bookmark_tabs": "📑",
	"bar_chart": "📊", "chart_with_upwards_trend": "📈", "chart_with_downwards_trend": "📉",
	"calendar": "📆", "date": "📅", "spiral_calendar_pad": "🗓️", "link": "🔗", "paperclip": "📎",
	"pushpin": "📌", "round_pushpin": "📍", "bookmark": "🔖", "label": "🏷️",
	"package": "📦", "inbox_tray": "📥", "outbox_tray": "📤", "email": "📧", "envelope": "✉️",
	"incoming_envelope": "📨", "file_folder": "📁", "open_file_folder": "📂",
	"card_file_box": "🗃️", "file_cabinet": "🗄️", "wastebasket": "🗑️", "broom": "🧹",
	"floppy_disk": "💾", "cd": "💿", "computer": "💻", "desktop_computer": "🖥️",
	"keyboard": "⌨️", "electric_plug": "🔌", "battery": "🔋", "satellite": "📡",
	"globe_with_meridians": "🌐", "cloud": "☁️", "whale": "🐳", "robot_face": "🤖",
	"test_tube": "🧪", "microscope": "🔬", "thermometer": "🌡️", "fire_extinguisher": "🧯",
	"ambulance": "🚑", "fire_engine": "🚒", "police_car": "🚓", "bug": "🐛", "beetle": "🐞",
	"snail": "🐌", "turtle": "🐢", "crystal_ball": "🔮", "moneybag": "💰", "gem": "💎",
	"speech_balloon": "💬", "thought_balloon": "💭", "bust_in_silhouette": "👤",
	"busts_in_silhouette": "👥", "man-raising-hand": "🙋‍♂️", "raising_hand": "🙋",
	"ice_cube": "🧊", "snowflake": "❄️", "sunny": "☀️", "umbrella": "☔",

	// Faces and hearts.
	"smile": "😄", "slightly_smiling_face": "🙂", "grinning": "😀", "joy": "😂", "wink": "😉",
	"thinking_face": "🤔", "neutral_face": "😐", "confused": "😕", "disappointed": "😞",
	"cry": "😢", "sob": "😭", "scream": "😱", "sweat_smile": "😅", "sweat": "😓",
	"face_with_rolling_eyes": "🙄", "sunglasses": "😎", "partying_face": "🥳",
	"heart": "❤️", "broken_heart": "💔", "green_heart": "💚", "yellow_heart": "💛",
	"blue_heart": "💙", "purple_heart": "💜",
}
